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
    /// The session's day, location and practitioner again, so the zone report reads this table alone.
    @Field(key: "day") var day: String
    @OptionalField(key: "location_id") var locationID: UUID?
    @Field(key: "practitioner_id") var practitionerID: UUID

    init() {}
}

/// A patient's series as the outcome and completion reports count it — their signed sessions so far — one row per
/// patient, rewritten whenever a chart is signed or amended or a score recorded, so a report over 100,000 sessions reads
/// one row per series instead of every session.
final class SeriesFact: Model, @unchecked Sendable {
    static let schema = "series_fact"

    @ID(key: .id) var id: UUID?
    @Field(key: "patient_id") var patientID: UUID
    @Field(key: "clinic_id") var clinicID: UUID
    @Field(key: "done") var done: Int
    /// The sessions the plan of the last session asks for.
    @Field(key: "planned") var planned: Int
    @Field(key: "first_day") var firstDay: String
    @Field(key: "last_day") var lastDay: String
    @OptionalField(key: "first_location_id") var firstLocationID: UUID?
    @Field(key: "first_practitioner_id") var firstPractitionerID: UUID
    @OptionalField(key: "last_location_id") var lastLocationID: UUID?
    @Field(key: "last_practitioner_id") var lastPractitionerID: UUID

    init() {}
}

/// An indication a series treated and the deepest depth charted for it.
final class SeriesIndicationFact: Model, @unchecked Sendable {
    static let schema = "series_indication_fact"

    @ID(key: .id) var id: UUID?
    @Field(key: "patient_id") var patientID: UUID
    @Field(key: "indication") var indication: String
    @Field(key: "deepest_mm") var deepestMm: Double

    init() {}
}

/// A scale and rater's scores across a series: how many sessions were scored, the first scored session's value and the
/// last's.
final class SeriesScoreFact: Model, @unchecked Sendable {
    static let schema = "series_score_fact"

    @ID(key: .id) var id: UUID?
    @Field(key: "patient_id") var patientID: UUID
    @Field(key: "scale") var scale: String
    @Field(key: "rater") var rater: String
    @Field(key: "scored") var scored: Int
    @Field(key: "first_value") var firstValue: Int
    @Field(key: "last_value") var lastValue: Int

    init() {}
}

enum ReportFacts {
    /// Two writes for one patient at once (two charts signed, a practitioner's scores and the patient's own GAIS) take
    /// turns on the patient's row, so each numbers and rewrites what the other committed.
    private static func lock(_ patientID: UUID, on db: any Database) async throws {
        try await Patient.lockRow(patientID, on: db)
    }

    /// Rewrites a patient's series rows from their session facts, zones and scores (a few rows: one patient's).
    static func refreshSeries(of patientID: UUID, on db: any Database) async throws {
        try await lock(patientID, on: db)
        try await SeriesFact.query(on: db).filter(\.$patientID == patientID).delete()
        try await SeriesIndicationFact.query(on: db).filter(\.$patientID == patientID).delete()
        try await SeriesScoreFact.query(on: db).filter(\.$patientID == patientID).delete()
        let facts = try await SessionFact.query(on: db).filter(\.$patientID == patientID).sort(\.$seriesNumber).all()
        guard let first = facts.first, let last = facts.last else { return }
        let series = SeriesFact()
        series.id = UUID()
        series.patientID = patientID
        series.clinicID = last.clinicID
        series.done = facts.count
        series.planned = last.plannedSessions
        series.firstDay = first.day
        series.lastDay = last.day
        series.firstLocationID = first.locationID
        series.firstPractitionerID = first.practitionerID
        series.lastLocationID = last.locationID
        series.lastPractitionerID = last.practitionerID
        try await series.create(on: db)
        var deepest: [String: Double] = [:]
        for zone in try await SessionZoneFact.query(on: db).filter(\.$patientID == patientID).all() {
            deepest[zone.indication] = max(deepest[zone.indication] ?? 0, zone.depthMm)
        }
        for (indication, depth) in deepest.sorted(by: { $0.key < $1.key }) {
            let row = SeriesIndicationFact()
            row.id = UUID()
            row.patientID = patientID
            row.indication = indication
            row.deepestMm = depth
            try await row.create(on: db)
        }
        let numbers = Dictionary(facts.map { ($0.chartID, $0.seriesNumber) }, uniquingKeysWith: { a, _ in a })
        let scored = try await OutcomeScore.query(on: db).filter(\.$patient.$id == patientID).all()
            .compactMap { score in numbers[score.chartID].map { (number: $0, score: score) } }
        for scores in Dictionary(grouping: scored, by: { "\($0.score.scale)|\($0.score.rater)" }).values {
            let ordered = scores.sorted { $0.number < $1.number }
            let row = SeriesScoreFact()
            row.id = UUID()
            row.patientID = patientID
            row.scale = ordered[0].score.scale
            row.rater = ordered[0].score.rater
            row.scored = ordered.count
            row.firstValue = ordered[0].score.value
            row.lastValue = ordered[ordered.count - 1].score.value
            try await row.create(on: db)
        }
    }

    /// Writes (or rewrites, after an amendment) the facts of a signed chart version.
    static func record(_ session: TreatmentSession, on db: any Database) async throws {
        guard session.isSigned else { return }
        guard let patient = try await Patient.find(session.$patient.id, on: db),
              let clinic = try await Clinic.find(patient.$clinic.id, on: db) else { return }
        // A plan that no longer reads (an old protocol's shape) costs its indications, never the signature.
        let plan = try? await TreatmentPlanRecord.find(session.$plan.id, on: db)?.plan
        let indications = Dictionary((plan?.zones ?? []).map { ($0.zone, $0.indication) }, uniquingKeysWith: { a, _ in a })
        try await lock(session.$patient.id, on: db)
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
        fact.plannedSessions = plan?.series.sessions ?? 0
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
            row.day = fact.day
            row.locationID = fact.locationID
            row.practitionerID = fact.practitionerID
            try await row.create(on: db)
        }
        try await refreshSeries(of: fact.patientID, on: db)
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
                .field("day", .string, .required)
                .field("location_id", .uuid)
                .field("practitioner_id", .uuid, .required)
                .create()
            try await database.schema(SeriesFact.schema)
                .id()
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("done", .int, .required)
                .field("planned", .int, .required)
                .field("first_day", .string, .required)
                .field("last_day", .string, .required)
                .field("first_location_id", .uuid)
                .field("first_practitioner_id", .uuid, .required)
                .field("last_location_id", .uuid)
                .field("last_practitioner_id", .uuid, .required)
                .unique(on: "patient_id")
                .create()
            try await database.schema(SeriesIndicationFact.schema)
                .id()
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("indication", .string, .required)
                .field("deepest_mm", .double, .required)
                .unique(on: "patient_id", "indication")
                .create()
            try await database.schema(SeriesScoreFact.schema)
                .id()
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("scale", .string, .required)
                .field("rater", .string, .required)
                .field("scored", .int, .required)
                .field("first_value", .int, .required)
                .field("last_value", .int, .required)
                .unique(on: "patient_id", "scale", "rater")
                .create()
            // When a practitioner first acted on an adverse event (the time from a check-in's flag to an action).
            try await database.schema(AdverseEvent.schema).field("first_action_at", .datetime).update()
            try await database.schema(Clinic.schema).field("cancellation_notice_hours", .int).update()
            if let sql = database as? any SQLDatabase {
                // Covering indexes: the safety report's scans read the index alone, never the table.
                try await sql.raw("""
                    CREATE INDEX session_fact_clinic_day ON session_fact
                    (clinic_id, day, deepest_mm, chart_id, device_id, lot_id, location_id, practitioner_id)
                    """).run()
                try await sql.raw("CREATE UNIQUE INDEX session_fact_patient ON session_fact (patient_id, series_number)").run()
                try await sql.raw("CREATE INDEX session_zone_fact_chart ON session_zone_fact (chart_id)").run()
                try await sql.raw("CREATE INDEX session_zone_fact_patient ON session_zone_fact (patient_id)").run()
                try await sql.raw("""
                    CREATE INDEX session_zone_fact_clinic_day ON session_zone_fact (clinic_id, day, zone, chart_id, location_id, practitioner_id)
                    """).run()
                try await sql.raw("""
                    CREATE INDEX series_fact_last ON series_fact
                    (clinic_id, last_day, patient_id, done, planned, last_location_id, last_practitioner_id)
                    """).run()
                try await sql.raw("CREATE INDEX series_indication_fact_cover ON series_indication_fact (patient_id, indication, deepest_mm)").run()
                try await sql.raw("""
                    CREATE INDEX series_score_fact_cover ON series_score_fact (patient_id, scale, rater, scored, first_value, last_value)
                    """).run()
                try await sql.raw("""
                    CREATE INDEX series_fact_first ON series_fact
                    (clinic_id, first_day, patient_id, done, planned, first_location_id, first_practitioner_id)
                    """).run()
                // The operations report reads appointments by clinic and time from this index alone.
                try await sql.raw("""
                    CREATE INDEX appointment_clinic_time ON appointment
                    (clinic_id, starts_at, status, ends_at, updated_at, practitioner_id, room_id, pen_id, location_id)
                    """).run()
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
            for schema in [SeriesScoreFact.schema, SeriesIndicationFact.schema, SeriesFact.schema] { try await database.schema(schema).delete() }
            if let sql = database as? any SQLDatabase { try await sql.raw("DROP INDEX appointment_clinic_time").run() }
            try await database.schema(SessionZoneFact.schema).delete()
            try await database.schema(SessionFact.schema).delete()
        }
    }
}
