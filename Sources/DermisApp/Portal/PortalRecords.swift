import Fluent
import Foundation
import SQLKit
import Vapor

/// A sign-in link a patient asked for at `/my/sign-in`: only the token's digest is kept; it works once, for 15 minutes.
final class PortalSignInLink: Model, @unchecked Sendable {
    static let schema = "portal_sign_in_link"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "token_hash") var tokenHash: String
    @Field(key: "channel") var channel: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "used_at") var usedAt: Date?

    init() {}

    init(patientID: UUID, tokenHash: String, channel: String, at now: Date, lifetime: TimeInterval) {
        self.$patient.id = patientID
        self.tokenHash = tokenHash
        self.channel = channel
        self.createdAt = now
        self.expiresAt = now.addingTimeInterval(lifetime)
    }
}

/// A patient's signed-in device: its cookie's digest, when it started and was last used, when it expires, and when the
/// patient or staff ended it. Separate from staff sessions: it opens only `/my` pages, and only this patient's.
final class PortalSession: Model, @unchecked Sendable {
    static let schema = "portal_session"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "token_hash") var tokenHash: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "last_seen_at") var lastSeenAt: Date
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "ended_at") var endedAt: Date?
    /// Who ended it: nil by the patient (or expiry), else the staff member.
    @OptionalField(key: "ended_by") var endedBy: UUID?
    /// A short description of the device for the patient's own list ("Safari on iPhone").
    @Field(key: "device") var device: String

    init() {}
}

/// A question the patient sent the clinic from the consent page, and when a practitioner marked it answered.
final class PortalQuestion: Model, @unchecked Sendable {
    static let schema = "portal_question"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @OptionalField(key: "plan_id") var planID: UUID?
    @Field(key: "text") var text: String
    @Field(key: "asked_at") var askedAt: Date
    @OptionalField(key: "answered_at") var answeredAt: Date?
    @OptionalField(key: "answered_by") var answeredBy: UUID?

    init() {}
}

/// Where a record came from: typed in at the clinic by staff (nil, as every record before the portal) or by the
/// patient at home.
enum RecordSource {
    static let patientPortal = "patient-portal"
}

struct CreatePortal: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(PortalSignInLink.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("token_hash", .string, .required)
            .field("channel", .string, .required)
            .field("created_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .field("used_at", .datetime)
            .unique(on: "token_hash")
            .create()
        try await database.schema(PortalSession.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("token_hash", .string, .required)
            .field("created_at", .datetime, .required)
            .field("last_seen_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .field("ended_at", .datetime)
            .field("ended_by", .uuid)
            .field("device", .string, .required)
            .unique(on: "token_hash")
            .create()
        try await database.schema(PortalQuestion.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("plan_id", .uuid)
            .field("text", .string, .required)
            .field("asked_at", .datetime, .required)
            .field("answered_at", .datetime)
            .field("answered_by", .uuid)
            .create()
        // One column per statement: SQLite alters one at a time.
        try await database.schema(IntakeRecord.schema).field("source", .string).update()
        try await database.schema(ConsentRecord.schema).field("source", .string).update()
        try await database.schema(Photo.schema).field("shared_at", .datetime).update()
        try await database.schema(Photo.schema).field("shared_by", .uuid).update()
        if let sql = database as? any SQLDatabase {
            try await sql.create(index: "portal_session_patient").on(PortalSession.schema).column("patient_id").run()
            try await sql.create(index: "portal_sign_in_link_patient").on(PortalSignInLink.schema).column("patient_id").run()
            try await sql.create(index: "portal_question_patient").on(PortalQuestion.schema).column("patient_id").run()
        }
    }

    func revert(on database: any Database) async throws {
        try await database.schema(Photo.schema).deleteField("shared_by").update()
        try await database.schema(Photo.schema).deleteField("shared_at").update()
        try await database.schema(ConsentRecord.schema).deleteField("source").update()
        try await database.schema(IntakeRecord.schema).deleteField("source").update()
        for schema in [PortalQuestion.schema, PortalSession.schema, PortalSignInLink.schema] {
            try await database.schema(schema).delete()
        }
    }
}
