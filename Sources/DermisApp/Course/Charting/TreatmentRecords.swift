import DermisCore
import Fluent
import Foundation
import Vapor

/// A saved treatment plan: the request, the engine's result after the practitioner's adjustments. Versioned.
final class TreatmentPlanRecord: Model, @unchecked Sendable {
    static let schema = "treatment_plan"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "version") var version: Int
    @Field(key: "request") var request: String
    @Field(key: "result") var result: String
    @Field(key: "adjustments") var adjustments: String
    @Field(key: "protocol_version") var protocolVersion: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID
    /// Zones a physician planned although the screening did not check them (comma-separated), why, and who.
    @OptionalField(key: "unscreened_zones") var unscreenedZones: String?
    @OptionalField(key: "unscreened_reason") var unscreenedReason: String?
    @OptionalField(key: "unscreened_by") var unscreenedBy: UUID?

    init() {}

    var plan: PlanResult { get throws { try decodeInput(PlanResult.self, from: Data(result.utf8)) } }
    /// The zones a physician's documented override lets this plan treat without their screening.
    var overriddenZones: Set<String> { Set((unscreenedZones ?? "").split(separator: ",").map(String.init)) }
    var planRequest: PlanRequest { get throws { try decodeInput(PlanRequest.self, from: Data(request.utf8)) } }
}

/// Consent text an admin publishes; a new version never changes what a patient already signed.
final class ConsentTemplate: Model, @unchecked Sendable {
    static let schema = "consent_template"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "version") var version: Int
    @Field(key: "title") var title: String
    @Field(key: "body") var body: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID

    init() {}
}

/// A patient's signed consent to one plan version under one template version.
final class ConsentRecord: Model, @unchecked Sendable {
    static let schema = "consent"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Parent(key: "plan_id") var plan: TreatmentPlanRecord
    @Parent(key: "template_id") var template: ConsentTemplate
    @Field(key: "typed_name") var typedName: String
    @Field(key: "signature_png") var signaturePNG: Data
    @Field(key: "signature_sha256") var signatureSHA256: String
    @Field(key: "signed_at") var signedAt: Date
    @Field(key: "recorded_by") var recordedBy: UUID
    /// Nil: signed on the clinic's tablet, recorded by `recordedBy`; `patient-portal`: signed at home (`recordedBy` is
    /// the patient).
    @OptionalField(key: "source") var source: String?

    init() {}
}

/// One version of a session chart. Drafts are edited in place (version checked); once signed, a chart is
/// amend-only: each amendment is a new row with the next version, the same `chartID` and its reason.
final class TreatmentSession: Model, @unchecked Sendable {
    static let schema = "treatment_session"

    @ID(key: .id) var id: UUID?
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "version") var version: Int
    @Parent(key: "patient_id") var patient: Patient
    @Parent(key: "plan_id") var plan: TreatmentPlanRecord
    @Parent(key: "consent_id") var consent: ConsentRecord
    @Parent(key: "screening_id") var screening: ScreeningRecord
    @Field(key: "practitioner_id") var practitionerID: UUID
    @OptionalParent(key: "device_id") var device: Device?
    @OptionalParent(key: "lot_id") var lot: CartridgeLot?
    @Field(key: "status") var status: String
    @Field(key: "identity_confirmed") var identityConfirmed: Bool
    @Field(key: "skin_cleansed") var skinCleansed: Bool
    @OptionalField(key: "anaesthetic_applied_at") var anaestheticAppliedAt: Date?
    @OptionalField(key: "numbing_override_reason") var numbingOverrideReason: String?
    @OptionalField(key: "pain_score") var painScore: Int?
    @OptionalField(key: "erythema_grade") var erythemaGrade: Int?
    @OptionalField(key: "pinpoint_bleeding") var pinpointBleeding: Bool?
    @Field(key: "notes") var notes: String
    @Field(key: "zones") var zonesJSON: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date
    @OptionalField(key: "signed_at") var signedAt: Date?
    @OptionalField(key: "signed_by") var signedBy: UUID?
    @OptionalField(key: "amendment_reason") var amendmentReason: String?

    init() {}

    var zones: [ChartedZone] {
        get { (try? JSONDecoder().decode([ChartedZone].self, from: Data(zonesJSON.utf8))) ?? [] }
        set { zonesJSON = String(decoding: (try? JSONEncoder().encode(newValue)) ?? Data("[]".utf8), as: UTF8.self) }
    }

    var isSigned: Bool { status == "signed" }

    /// A copy as the next version, for an amendment.
    func nextVersion() -> TreatmentSession {
        let copy = TreatmentSession()
        copy.chartID = chartID
        copy.version = version + 1
        copy.$patient.id = $patient.id
        copy.$plan.id = $plan.id
        copy.$consent.id = $consent.id
        copy.$screening.id = $screening.id
        copy.practitionerID = practitionerID
        copy.$device.id = $device.id
        copy.$lot.id = $lot.id
        copy.status = status
        copy.identityConfirmed = identityConfirmed
        copy.skinCleansed = skinCleansed
        copy.anaestheticAppliedAt = anaestheticAppliedAt
        copy.numbingOverrideReason = numbingOverrideReason
        copy.painScore = painScore
        copy.erythemaGrade = erythemaGrade
        copy.pinpointBleeding = pinpointBleeding
        copy.notes = notes
        copy.zonesJSON = zonesJSON
        copy.createdAt = createdAt
        copy.updatedAt = updatedAt
        copy.signedAt = signedAt
        copy.signedBy = signedBy
        return copy
    }
}

struct CreateTreatmentRecords: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(TreatmentPlanRecord.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("version", .int, .required)
            .field("request", .string, .required)
            .field("result", .string, .required)
            .field("adjustments", .string, .required)
            .field("protocol_version", .string, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .unique(on: "patient_id", "version")
            .create()
        try await database.schema(ConsentTemplate.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("version", .int, .required)
            .field("title", .string, .required)
            .field("body", .string, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .unique(on: "clinic_id", "version")
            .create()
        try await database.schema(ConsentRecord.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("plan_id", .uuid, .required, .references(TreatmentPlanRecord.schema, .id))
            .field("template_id", .uuid, .required, .references(ConsentTemplate.schema, .id))
            .field("typed_name", .string, .required)
            .field("signature_png", .data, .required)
            .field("signature_sha256", .string, .required)
            .field("signed_at", .datetime, .required)
            .field("recorded_by", .uuid, .required)
            .create()
        try await database.schema(TreatmentSession.schema)
            .id()
            .field("chart_id", .uuid, .required)
            .field("version", .int, .required)
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("plan_id", .uuid, .required, .references(TreatmentPlanRecord.schema, .id))
            .field("consent_id", .uuid, .required, .references(ConsentRecord.schema, .id))
            .field("screening_id", .uuid, .required, .references(ScreeningRecord.schema, .id))
            .field("practitioner_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("device_id", .uuid, .references(Device.schema, .id))
            .field("lot_id", .uuid, .references(CartridgeLot.schema, .id))
            .field("status", .string, .required)
            .field("identity_confirmed", .bool, .required)
            .field("skin_cleansed", .bool, .required)
            .field("anaesthetic_applied_at", .datetime)
            .field("numbing_override_reason", .string)
            .field("pain_score", .int)
            .field("erythema_grade", .int)
            .field("pinpoint_bleeding", .bool)
            .field("notes", .string, .required)
            .field("zones", .string, .required)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .field("signed_at", .datetime)
            .field("signed_by", .uuid)
            .field("amendment_reason", .string)
            .unique(on: "chart_id", "version")
            .create()
    }

    func revert(on database: any Database) async throws {
        for schema in [TreatmentSession.schema, ConsentRecord.schema, ConsentTemplate.schema, TreatmentPlanRecord.schema] {
            try await database.schema(schema).delete()
        }
    }
}

/// Who was treated with a cartridge lot: what a recall needs (that is why lots are recorded).
enum LotRecall {
    static func uses(of lotID: UUID, on db: any Database) async throws -> [InventoryController.UseRow] {
        let sessions = try await TreatmentSession.query(on: db).filter(\.$lot.$id == lotID).sort(\.$createdAt).all()
        var seen = Set<UUID>()
        var rows: [InventoryController.UseRow] = []
        for session in sessions where seen.insert(session.chartID).inserted {
            let patient = try await Patient.find(session.$patient.id, on: db)
            let practitioner = try await StaffUser.find(session.practitionerID, on: db)
            rows.append(.init(patientID: session.$patient.id.uuidString, patientName: patient.map { $0.fullName } ?? "?",
                              mrn: patient?.mrn ?? "", sessionID: session.chartID.uuidString,
                              date: AuditLog.isoDay(session.createdAt), practitioner: practitioner?.name ?? "?"))
        }
        return rows
    }
}

/// A physician's documented override for planning a zone the screening did not check.
struct UnscreenedZoneOverrides: AsyncMigration {
    func prepare(on database: any Database) async throws {
        // One column per ALTER TABLE: SQLite takes no more.
        try await database.schema(TreatmentPlanRecord.schema).field("unscreened_zones", .string).update()
        try await database.schema(TreatmentPlanRecord.schema).field("unscreened_reason", .string).update()
        try await database.schema(TreatmentPlanRecord.schema).field("unscreened_by", .uuid).update()
    }

    func revert(on database: any Database) async throws {
        for field in ["unscreened_zones", "unscreened_reason", "unscreened_by"] {
            try await database.schema(TreatmentPlanRecord.schema).deleteField(.string(field)).update()
        }
    }
}
