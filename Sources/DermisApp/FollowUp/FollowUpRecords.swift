import DermisCore
import Fluent
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Vapor

/// The aftercare a signed session issued: the schedule laid on the clock. A new version when an amendment changes
/// the deepest depth; the first version's session end stays the clock's origin.
final class AftercarePlan: Model, @unchecked Sendable {
    static let schema = "aftercare_plan"

    @ID(key: .id) var id: UUID?
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "version") var version: Int
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "schedule") var scheduleJSON: String
    @Field(key: "issued_at") var issuedAt: Date
    @Field(key: "issued_by") var issuedBy: UUID

    init() {}

    var schedule: AftercareSchedule { get throws { try JSONDecoder().decode(AftercareSchedule.self, from: Data(scheduleJSON.utf8)) } }
}

/// A patient's personal aftercare link. Only the SHA-256 of the token is stored; the token is shown once.
final class PatientLink: Model, @unchecked Sendable {
    static let schema = "patient_link"

    @ID(key: .id) var id: UUID?
    @Field(key: "token_hash") var tokenHash: String
    @Field(key: "chart_id") var chartID: UUID
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "revoked_at") var revokedAt: Date?
    @OptionalField(key: "revoked_by") var revokedBy: UUID?
    /// The token sealed with the server's key, so the check-in invitations written later can carry the link.
    @OptionalField(key: "token_sealed") var tokenSealed: String?

    init() {}

    func isUsable(at now: Date) -> Bool { revokedAt == nil && now < expiresAt }
}

/// A patient's report from their link, with the flags the rules raised.
final class CheckIn: Model, @unchecked Sendable {
    static let schema = "check_in"

    @ID(key: .id) var id: UUID?
    @Parent(key: "link_id") var link: PatientLink
    @Field(key: "chart_id") var chartID: UUID
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "submitted_at") var submittedAt: Date
    @Field(key: "day") var day: Int
    @Field(key: "redness") var redness: Int
    @Field(key: "pain") var pain: Int
    @Field(key: "swelling") var swelling: Bool
    @Field(key: "itching") var itching: Bool
    @Field(key: "infection_signs") var infectionSigns: String
    @Field(key: "notes") var notes: String
    @OptionalField(key: "photo_id") var photoID: UUID?
    @Field(key: "flags") var flagsJSON: String

    init() {}

    var flags: [CheckInFlag] { (try? JSONDecoder().decode([CheckInFlag].self, from: Data(flagsJSON.utf8))) ?? [] }
    var signs: [String] { infectionSigns.split(separator: ",").map(String.init) }
}

/// An adverse event the practitioner manages: opened by a check-in rule or by hand. Edits are version-checked.
final class AdverseEvent: Model, @unchecked Sendable {
    static let schema = "adverse_event"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "patient_id") var patient: Patient
    @OptionalField(key: "chart_id") var chartID: UUID?
    @OptionalParent(key: "check_in_id") var checkIn: CheckIn?
    @Field(key: "type") var type: String
    @Field(key: "severity") var severity: String
    @Field(key: "onset") var onset: String
    @Field(key: "description") var details: String
    @Field(key: "actions") var actions: String
    @Field(key: "outcome") var outcome: String
    @OptionalField(key: "resolved_on") var resolvedOn: String?
    /// `check-in-rule` or `practitioner`.
    @Field(key: "opened_by_kind") var openedByKind: String
    @OptionalField(key: "opened_by") var openedBy: UUID?
    @Field(key: "opened_at") var openedAt: Date
    @Field(key: "version") var version: Int
    @Field(key: "updated_at") var updatedAt: Date
    @OptionalField(key: "updated_by") var updatedBy: UUID?
    /// When a practitioner first edited it (acted on it): the safety report's time from a check-in flag to an action.
    @OptionalField(key: "first_action_at") var firstActionAt: Date?

    init() {}

    var isOpen: Bool { resolvedOn == nil }
}

/// One score on one outcome scale for one session, by one rater; scoring again replaces it (audited).
final class OutcomeScore: Model, @unchecked Sendable {
    static let schema = "outcome_score"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "scale") var scale: String
    @Field(key: "rater") var rater: String
    @Field(key: "value") var value: Int
    @Field(key: "recorded_at") var recordedAt: Date
    @OptionalField(key: "recorded_by") var recordedBy: UUID?

    init() {}
}

/// A before/after photo: the record; the bytes live in the photo store under `storedName`.
final class Photo: Model, @unchecked Sendable {
    static let schema = "photo"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @OptionalField(key: "chart_id") var chartID: UUID?
    @Field(key: "zone") var zone: String
    @Field(key: "view") var view: String
    @Field(key: "taken_on") var takenOn: String
    @Field(key: "uploaded_at") var uploadedAt: Date
    @OptionalField(key: "uploaded_by") var uploadedBy: UUID?
    /// `staff` or `patient-link`.
    @Field(key: "source") var source: String
    @Field(key: "content_type") var contentType: String
    @Field(key: "width") var width: Int
    @Field(key: "height") var height: Int
    @Field(key: "byte_count") var byteCount: Int
    @Field(key: "sha256") var sha256: String
    @Field(key: "stored_name") var storedName: String
    /// When a practitioner chose to show this photo on the patient's own pages (nil: not shown), and who.
    @OptionalField(key: "shared_at") var sharedAt: Date?
    @OptionalField(key: "shared_by") var sharedBy: UUID?

    init() {}

    static let views: [(id: String, label: String)] = [
        ("front", "Front"), ("left-45", "Left 45°"), ("right-45", "Right 45°"), ("left-90", "Left 90°"), ("right-90", "Right 90°"),
    ]
}

/// Counted events for rate limits that must hold across restarts and instances (patient links, public pages).
final class RateEvent: Model, @unchecked Sendable {
    static let schema = "rate_event"

    @ID(key: .id) var id: UUID?
    @Field(key: "bucket") var bucket: String
    @Field(key: "at") var at: Date

    init() {}

    init(bucket: String, at: Date) {
        self.bucket = bucket
        self.at = at
    }
}

struct CreateFollowUp: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(AftercarePlan.schema)
            .id()
            .field("chart_id", .uuid, .required)
            .field("version", .int, .required)
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("schedule", .string, .required)
            .field("issued_at", .datetime, .required)
            .field("issued_by", .uuid, .required, .references(StaffUser.schema, .id))
            .unique(on: "chart_id", "version")
            .create()
        try await database.schema(PatientLink.schema)
            .id()
            .field("token_hash", .string, .required)
            .field("chart_id", .uuid, .required)
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required, .references(StaffUser.schema, .id))
            .field("expires_at", .datetime, .required)
            .field("revoked_at", .datetime)
            .field("revoked_by", .uuid)
            .unique(on: "token_hash")
            .create()
        try await database.schema(Photo.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("chart_id", .uuid)
            .field("zone", .string, .required)
            .field("view", .string, .required)
            .field("taken_on", .string, .required)
            .field("uploaded_at", .datetime, .required)
            .field("uploaded_by", .uuid)
            .field("source", .string, .required)
            .field("content_type", .string, .required)
            .field("width", .int, .required)
            .field("height", .int, .required)
            .field("byte_count", .int, .required)
            .field("sha256", .string, .required)
            .field("stored_name", .string, .required)
            .unique(on: "stored_name")
            .create()
        try await database.schema(CheckIn.schema)
            .id()
            .field("link_id", .uuid, .required, .references(PatientLink.schema, .id))
            .field("chart_id", .uuid, .required)
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("submitted_at", .datetime, .required)
            .field("day", .int, .required)
            .field("redness", .int, .required)
            .field("pain", .int, .required)
            .field("swelling", .bool, .required)
            .field("itching", .bool, .required)
            .field("infection_signs", .string, .required)
            .field("notes", .string, .required)
            .field("photo_id", .uuid, .references(Photo.schema, .id))
            .field("flags", .string, .required)
            .create()
        try await database.schema(AdverseEvent.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("chart_id", .uuid)
            .field("check_in_id", .uuid, .references(CheckIn.schema, .id))
            .field("type", .string, .required)
            .field("severity", .string, .required)
            .field("onset", .string, .required)
            .field("description", .string, .required)
            .field("actions", .string, .required)
            .field("outcome", .string, .required)
            .field("resolved_on", .string)
            .field("opened_by_kind", .string, .required)
            .field("opened_by", .uuid)
            .field("opened_at", .datetime, .required)
            .field("version", .int, .required)
            .field("updated_at", .datetime, .required)
            .field("updated_by", .uuid)
            .create()
        try await database.schema(OutcomeScore.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("chart_id", .uuid, .required)
            .field("scale", .string, .required)
            .field("rater", .string, .required)
            .field("value", .int, .required)
            .field("recorded_at", .datetime, .required)
            .field("recorded_by", .uuid)
            .unique(on: "chart_id", "scale", "rater")
            .create()
        try await database.schema(RateEvent.schema)
            .id()
            .field("bucket", .string, .required)
            .field("at", .datetime, .required)
            .create()
        if let sql = database as? any SQLDatabase {
            try await sql.raw("CREATE INDEX rate_event_bucket_at ON rate_event (bucket, at)").run()
            try await sql.raw("CREATE INDEX check_in_chart ON check_in (chart_id, submitted_at)").run()
            try await sql.raw("CREATE INDEX photo_patient ON photo (patient_id, zone, view)").run()
        }
    }

    func revert(on database: any Database) async throws {
        for schema in [RateEvent.schema, OutcomeScore.schema, AdverseEvent.schema, CheckIn.schema, Photo.schema,
                       PatientLink.schema, AftercarePlan.schema] {
            try await database.schema(schema).delete()
        }
    }
}

/// Rate limits counted in the database, so they hold across restarts and across a chain's instances.
enum RateLimits {
    /// Records this attempt in `bucket`, then answers whether the bucket now holds more than `limit` in the last `window`
    /// seconds. Recording first is what makes it hold under concurrency: of many requests at once, the k-th to commit its
    /// row counts at least k, so at most `limit` get through (counting first, each could see room and all pass). Refused
    /// attempts count too, so hammering a limit keeps it closed.
    static func exceeded(_ bucket: String, limit: Int, window: TimeInterval, now: Date, on db: any Database) async throws -> Bool {
        try await record(bucket, now: now, on: db)
        return try await count(bucket, window: window, now: now, on: db) > limit
    }

    /// How many events `bucket` has had in the window, recording none.
    static func count(_ bucket: String, window: TimeInterval, now: Date, on db: any Database) async throws -> Int {
        try await RateEvent.query(on: db).filter(\.$bucket == bucket).filter(\.$at > now.addingTimeInterval(-window)).count()
    }

    static func record(_ bucket: String, now: Date, on db: any Database) async throws {
        // Events older than any window are pruned, but not on every request: at most every ten minutes per process.
        let prune = pruning.withLockedValue { last in
            guard now.timeIntervalSince(last) >= 600 || now < last else { return false }
            last = now
            return true
        }
        try await Writes.transaction(db) { db in
            try await RateEvent(bucket: bucket, at: now).create(on: db)
            if prune { try await RateEvent.query(on: db).filter(\.$at < now.addingTimeInterval(-2 * 86_400)).delete() }
        }
    }

    private static let pruning = NIOLockedValueBox(Date.distantPast)
}
