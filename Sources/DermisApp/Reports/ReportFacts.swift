import DermisCore
import Fluent
import Foundation
import SQLKit

/// One signed session as the reports count it: a row per chart, rewritten when the chart is amended, so the reports
/// aggregate plain columns in SQL instead of decoding every chart's zones. Written in the same unit of work as the
/// signature or amendment, so a report never sees a signed chart without its facts.
final class SessionFact: Model, @unchecked Sendable {
    static let schema = "session_fact"

    @ID(key: .id) var id: UUID?
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "clinic_id") var clinicID: UUID
    @Field(key: "patient_id") var patientID: UUID
    @Field(key: "practitioner_id") var practitionerID: UUID
    @OptionalField(key: "device_id") var deviceID: UUID?
    @OptionalField(key: "lot_id") var lotID: UUID?
    /// Where the pen used is kept: the session's location.
    @OptionalField(key: "location_id") var locationID: UUID?
    /// The session's day in the clinic's zone, `YYYY-MM-DD` (sorts as text on both databases).
    @Field(key: "day") var day: String
    @Field(key: "deepest_mm") var deepestMm: Double
    /// This chart's place among the patient's signed sessions, from 1.
    @Field(key: "series_number") var seriesNumber: Int
    /// The sessions the plan this chart followed asks for.
    @Field(key: "planned_sessions") var plannedSessions: Int

    init() {}
}

/// One treated zone of a signed session, with the indication the plan treated it for and the depth charted.
final class SessionZoneFact: Model, @unchecked Sendable {
    static let schema = "session_zone_fact"

    @ID(key: .id) var id: UUID?
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "clinic_id") var clinicID: UUID
    @Field(key: "patient_id") var patientID: UUID
    @Field(key: "zone") var zone: String
    @Field(key: "indication") var indication: String
    @Field(key: "depth_mm") var depthMm: Double

    init() {}
}

enum ReportFacts {
    /// Writes (or rewrites, after an amendment) the facts of a signed chart version.
    static func record(_ session: TreatmentSession, on db: any Database) async throws {
        guard session.isSigned else { return }
        guard let patient = try await Patient.find(session.$patient.id, on: db),
              let clinic = try await Clinic.find(patient.$clinic.id, on: db),
              let planRecord = try await TreatmentPlanRecord.find(session.$plan.id, on: db) else { return }
        let plan = try planRecord.plan
        let indications = Dictionary(plan.zones.map { ($0.zone, $0.indication) }, uniquingKeysWith: { a, _ in a })
        let existing = try await SessionFact.query(on: db).filter(\.$chartID == session.chartID).first()
        let fact = existing ?? SessionFact()
        if existing == nil {
            fact.id = UUID()
            fact.chartID = session.chartID
            fact.seriesNumber = try await SessionFact.query(on: db).filter(\.$patientID == session.$patient.id).count() + 1
        }
        fact.clinicID = try clinic.requireID()
        fact.patientID = session.$patient.id
        fact.practitionerID = session.practitionerID
        fact.deviceID = session.$device.id
        fact.lotID = session.$lot.id
        fact.locationID = if let deviceID = session.$device.id { try await Device.find(deviceID, on: db)?.$location.id } else { nil }
        fact.day = CalendarDate(session.createdAt, in: clinic.zone).description
        fact.deepestMm = session.zones.map(\.depthMm).max() ?? 0
        fact.plannedSessions = plan.series.sessions
        try await fact.save(on: db)
        try await SessionZoneFact.query(on: db).filter(\.$chartID == session.chartID).delete()
        for zone in session.zones {
            let row = SessionZoneFact()
            row.id = UUID()
            row.chartID = session.chartID
            row.clinicID = fact.clinicID
            row.patientID = fact.patientID
            row.zone = zone.zone
            row.indication = indications[zone.zone] ?? "unplanned"
            row.depthMm = zone.depthMm
            try await row.create(on: db)
        }
    }

    struct Migration: AsyncMigration {
        func prepare(on database: any Database) async throws {
            try await database.schema(SessionFact.schema)
                .id()
                .field("chart_id", .uuid, .required)
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("practitioner_id", .uuid, .required)
                .field("device_id", .uuid)
                .field("lot_id", .uuid)
                .field("location_id", .uuid)
                .field("day", .string, .required)
                .field("deepest_mm", .double, .required)
                .field("series_number", .int, .required)
                .field("planned_sessions", .int, .required)
                .unique(on: "chart_id")
                .create()
            try await database.schema(SessionZoneFact.schema)
                .id()
                .field("chart_id", .uuid, .required)
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("zone", .string, .required)
                .field("indication", .string, .required)
                .field("depth_mm", .double, .required)
                .create()
            // When a practitioner first acted on an adverse event (the time from a check-in's flag to an action).
            try await database.schema(AdverseEvent.schema).field("first_action_at", .datetime).update()
            try await database.schema(Clinic.schema).field("cancellation_notice_hours", .int).update()
            if let sql = database as? any SQLDatabase {
                try await sql.raw("CREATE INDEX session_fact_clinic_day ON session_fact (clinic_id, day)").run()
                try await sql.raw("CREATE INDEX session_fact_patient ON session_fact (patient_id, series_number)").run()
                try await sql.raw("CREATE INDEX session_zone_fact_chart ON session_zone_fact (chart_id)").run()
                try await sql.raw("CREATE INDEX adverse_event_chart ON adverse_event (chart_id)").run()
                // Every event edited since it opened was acted on; the first edit is not known, the last is the best bound.
                try await sql.raw("UPDATE adverse_event SET first_action_at = updated_at WHERE version > 1").run()
            }
            // Charts signed before this migration: their facts, in the order they were charted.
            let signed = try await TreatmentSession.query(on: database).filter(\.$status == "signed").sort(\.$createdAt).sort(\.$version).all()
            var latest: [UUID: TreatmentSession] = [:]
            for session in signed where (latest[session.chartID]?.version ?? 0) < session.version { latest[session.chartID] = session }
            for session in latest.values.sorted(by: { $0.createdAt < $1.createdAt }) { try await ReportFacts.record(session, on: database) }
        }

        func revert(on database: any Database) async throws {
            try await database.schema(AdverseEvent.schema).deleteField("first_action_at").update()
            try await database.schema(Clinic.schema).deleteField("cancellation_notice_hours").update()
            try await database.schema(SessionZoneFact.schema).delete()
            try await database.schema(SessionFact.schema).delete()
        }
    }
}
