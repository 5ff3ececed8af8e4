import DermisCore
import Fluent
import Foundation
import Vapor

/// One intake as the patient gave it, in the contract's JSON. Versioned: a new intake never overwrites the old one.
final class IntakeRecord: Model, @unchecked Sendable {
    static let schema = "intake"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "version") var version: Int
    @Field(key: "answers") var answers: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID
    /// Nil: typed in at the clinic by `createdBy`; `patient-portal`: the patient's own answers (`createdBy` is the patient).
    @OptionalField(key: "source") var source: String?

    init() {}

    var intake: Intake {
        get throws { try decodeInput(Intake.self, from: Data(answers.utf8)) }
    }
}

/// A screening as it was run: the result, the protocol version and the day, kept with the intake it read.
final class ScreeningRecord: Model, @unchecked Sendable {
    static let schema = "screening"

    @ID(key: .id) var id: UUID?
    @Parent(key: "patient_id") var patient: Patient
    @Parent(key: "intake_id") var intake: IntakeRecord
    @Field(key: "outcome") var outcome: String
    @OptionalField(key: "until") var until: String?
    @Field(key: "result") var result: String
    @Field(key: "protocol_version") var protocolVersion: String
    @Field(key: "screened_on") var screenedOn: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID
    /// `patient-portal` when it screened the patient's own answers from home (nil: answers taken at the clinic).
    @OptionalField(key: "source") var source: String?
    /// A practitioner reviewed the patient's own answers with them: only then can a screening from home clear a session.
    @OptionalField(key: "reviewed_at") var reviewedAt: Date?
    @OptionalField(key: "reviewed_by") var reviewedBy: UUID?

    init() {}

    /// Answers from home that no practitioner has reviewed yet.
    var awaitsReview: Bool { source == RecordSource.patientPortal && reviewedAt == nil }

    var screening: ScreeningResult {
        get throws { try decodeInput(ScreeningResult.self, from: Data(result.utf8)) }
    }
}

/// A practitioner's documented decision to treat despite a rule: who, when, which rule, why.
final class ScreeningOverride: Model, @unchecked Sendable {
    static let schema = "screening_override"

    @ID(key: .id) var id: UUID?
    @Parent(key: "screening_id") var screening: ScreeningRecord
    @Field(key: "rule") var rule: String
    @Field(key: "reason") var reason: String
    @Field(key: "by") var by: UUID
    @OptionalField(key: "by_credential") var byCredential: String?
    @Field(key: "at") var at: Date

    init() {}
}

struct CreateIntakeAndScreening: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(IntakeRecord.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("version", .int, .required)
            .field("answers", .string, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .unique(on: "patient_id", "version")
            .create()
        try await database.schema(ScreeningRecord.schema)
            .id()
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("intake_id", .uuid, .required, .references(IntakeRecord.schema, .id))
            .field("outcome", .string, .required)
            .field("until", .string)
            .field("result", .string, .required)
            .field("protocol_version", .string, .required)
            .field("screened_on", .string, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .create()
        try await database.schema(ScreeningOverride.schema)
            .id()
            .field("screening_id", .uuid, .required, .references(ScreeningRecord.schema, .id))
            .field("rule", .string, .required)
            .field("reason", .string, .required)
            .field("by", .uuid, .required)
            .field("by_credential", .string)
            .field("at", .datetime, .required)
            .unique(on: "screening_id", "rule")
            .create()
    }

    func revert(on database: any Database) async throws {
        for schema in [ScreeningOverride.schema, ScreeningRecord.schema, IntakeRecord.schema] {
            try await database.schema(schema).delete()
        }
    }
}

/// Intake, screening and overrides for one patient of one clinic.
struct ScreeningService {
    let req: Request
    let patient: Patient

    var db: any Database { req.db }

    /// Stores the intake as the next version and screens it today; both are audited.
    /// `source`: nil when staff typed it in, `patient-portal` when the patient did at home (`staff` is then the patient).
    func record(_ intake: Intake, by staff: Principal, source: String? = nil) async throws -> (IntakeRecord, ScreeningRecord) {
        // Age rules screen on the date of birth: it is the patient record's, never a second, different one.
        guard intake.dateOfBirth.description == patient.dateOfBirth else {
            throw InvalidInput(path: "dateOfBirth", problem: "is \(intake.dateOfBirth), but the patient record says \(patient.dateOfBirth); "
                               + "the intake uses the record's date of birth (correct the record first if it is wrong)")
        }
        let today = try await req.today(in: req.clinic())
        let result = try Screening.screen(intake, on: today, protocol: req.dermis.clinicalProtocol)
        do {
            // The intake, its screening and the screening's audit row are one unit of work (the intake's row is the caller's).
            return try await Writes.transaction(db) { _ in
                let (intakeRecord, screening) = try await record(intake, result: result, today: today, by: staff, source: source)
                try await req.audit(.create, objectType: "Screening", objectID: screening.id?.uuidString, patientID: patient.id, outcome: .success)
                return (intakeRecord, screening)
            }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw DomainError.conflict("Someone saved an intake for this patient at the same moment; reload and try again.")
        }
    }

    private func record(_ intake: Intake, result: ScreeningResult, today: CalendarDate, by staff: Principal,
                        source: String?) async throws -> (IntakeRecord, ScreeningRecord) {
        let now = req.dermis.clock.now()
        let patientID = try patient.requireID()
        return try await Writes.transaction(db) { db in
            let last = try await IntakeRecord.query(on: db).filter(\.$patient.$id == patientID).sort(\.$version, .descending).first()
            let intakeRecord = IntakeRecord()
            intakeRecord.$patient.id = patientID
            intakeRecord.version = (last?.version ?? 0) + 1
            intakeRecord.answers = String(decoding: try ContractJSON.encode(intake), as: UTF8.self)
            intakeRecord.createdAt = now
            intakeRecord.createdBy = staff.userID
            intakeRecord.source = source
            try await intakeRecord.create(on: db)
            let screening = ScreeningRecord()
            screening.$patient.id = patientID
            screening.$intake.id = try intakeRecord.requireID()
            screening.outcome = result.outcome.rawValue
            screening.until = result.until?.description
            screening.result = String(decoding: try ContractJSON.encode(result), as: UTF8.self)
            screening.protocolVersion = result.protocolVersion
            screening.screenedOn = today.description
            screening.createdAt = now
            screening.createdBy = staff.userID
            screening.source = source
            try await screening.create(on: db)
            return (intakeRecord, screening)
        }
    }

    func latestIntake() async throws -> IntakeRecord? {
        try await IntakeRecord.query(on: db).filter(\.$patient.$id == patient.requireID()).sort(\.$version, .descending).first()
    }

    func latestScreening() async throws -> ScreeningRecord? {
        try await ScreeningRecord.query(on: db).filter(\.$patient.$id == patient.requireID()).sort(\.$createdAt, .descending).first()
    }

    func screening(_ id: UUID) async throws -> ScreeningRecord {
        guard let record = try await ScreeningRecord.query(on: db).filter(\.$id == id).filter(\.$patient.$id == patient.requireID()).first() else {
            throw DomainError.notFound("No such screening.")
        }
        return record
    }

    /// Whether `screening` (the latest when nil) lets a session start today, with the overrides it has.
    func clearance(of screening: ScreeningRecord?) async throws -> (ScreeningClearance, [ScreeningOverride]) {
        var overrides: [ScreeningOverride] = []
        if let screening { overrides = try await self.overrides(of: screening) }
        let clearance = try ScreeningClearance(screening, overrides: overrides, today: try await req.today(in: req.clinic()),
                                               validDays: req.dermis.settings.screeningValidDays)
        return (clearance, overrides)
    }

    func overrides(of screening: ScreeningRecord) async throws -> [ScreeningOverride] {
        try await ScreeningOverride.query(on: db).filter(\.$screening.$id == screening.requireID()).sort(\.$at).all()
    }

    /// A practitioner's review of the patient's own answers from home, with the patient: from then on the screening
    /// clears (or blocks) like one taken at the clinic. Reviewing twice changes nothing.
    func review(_ screening: ScreeningRecord, by staff: Principal) async throws {
        guard screening.source == RecordSource.patientPortal else {
            throw DomainError.conflict("These answers were taken at the clinic; there is nothing from home to review.")
        }
        guard screening.reviewedAt == nil else { return }
        try await ConditionalUpdate(ScreeningRecord.self, id: try screening.requireID(), on: db)
            .whereNull(\.$reviewedAt)
            .set(\.$reviewedAt, to: req.dermis.clock.now())
            .set(\.$reviewedBy, to: staff.userID)
            .run(orThrow: DomainError.conflict("Someone reviewed these answers at the same moment."))
    }

    /// Records a documented override. Deferrals and precautions: any practitioner or admin. Not-eligible: physicians only.
    func override(_ screening: ScreeningRecord, rule: String, reason: String, by staff: Principal) async throws -> ScreeningOverride {
        let result = try screening.screening
        guard let finding = (result.reasons + result.precautions).first(where: { $0.rule == rule }) else {
            throw InvalidInput(path: "rule", problem: "'\(rule)' did not fire in this screening")
        }
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count < 10 { throw InvalidInput(path: "reason", problem: "give the clinical reason (at least 10 characters)") }
        if let issue = TextLimits.issue(trimmed, "reason", max: TextLimits.reason) { throw InvalidInput([issue]) }
        let user = try await StaffUser.find(staff.userID, on: db)
        if finding.kind == ClinicalProtocol.RuleKind.notEligible.rawValue, user?.credential?.lowercased() != "physician" {
            throw Abort(.forbidden, reason: "Only a physician may override a not-eligible finding ('\(rule)'); refer the patient.")
        }
        let record = ScreeningOverride()
        record.$screening.id = try screening.requireID()
        record.rule = rule
        record.reason = trimmed
        record.by = staff.userID
        record.byCredential = user?.credential
        record.at = req.dermis.clock.now()
        do {
            try await record.create(on: db)
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw DomainError.conflict("'\(rule)' is already overridden in this screening.")
        }
        return record
    }
}

/// Whether a screening lets a session start today: recent enough, and nothing blocking left un-overridden.
struct ScreeningClearance: Sendable {
    let current: Bool
    let cleared: Bool
    let blocking: [String]
    let expiresOn: CalendarDate?
    /// The screening read the patient's own answers from home and no practitioner has reviewed them: it clears nothing.
    let awaitsReview: Bool

    /// What `blocking` holds for answers from home not yet reviewed.
    static let reviewPending = "the patient's answers from home await a practitioner's review"

    init(_ screening: ScreeningRecord?, overrides: [ScreeningOverride], today: CalendarDate, validDays: Int) throws {
        guard let screening, let screenedOn = CalendarDate(iso: screening.screenedOn) else {
            current = false
            cleared = false
            blocking = ["no screening"]
            expiresOn = nil
            awaitsReview = false
            return
        }
        let expires = screenedOn.adding(days: validDays)
        expiresOn = expires
        current = today < expires
        let overridden = Set(overrides.map(\.rule))
        let result = try screening.screening
        let open = result.reasons.map(\.rule).filter { !overridden.contains($0) }
        awaitsReview = screening.awaitsReview
        blocking = open + (awaitsReview ? [Self.reviewPending] : [])
        cleared = blocking.isEmpty
    }
}

/// Screenings of the patient's own answers, and their review by a practitioner.
struct PatientAnswersReview: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(ScreeningRecord.schema).field("source", .string).update()
        try await database.schema(ScreeningRecord.schema).field("reviewed_at", .datetime).update()
        try await database.schema(ScreeningRecord.schema).field("reviewed_by", .uuid).update()
    }

    func revert(on database: any Database) async throws {
        for field in ["reviewed_by", "reviewed_at", "source"] { try await database.schema(ScreeningRecord.schema).deleteField(.string(field)).update() }
    }
}
