import DermisCore
import Fluent
import Foundation
import SQLKit

/// What a report covers: a clinic, days in the clinic's zone (both ends included), and optionally one location or one
/// practitioner.
struct ReportFilter: Sendable {
    var clinicID: UUID
    var from: CalendarDate
    var to: CalendarDate
    var locationID: UUID?
    var practitionerID: UUID?
    /// The clinic's zone: days and weeks are counted in it.
    var zone: TimeZone
    /// The report's "now": the end of attendance figures, "booked ahead", days open.
    var now: Date

    /// The report's instants: from the start of `from` to the start of the day after `to`.
    var start: Date { AftercareSchedule.bounds(of: from, in: zone).0 }
    var end: Date { AftercareSchedule.bounds(of: to, in: zone).1 }
}

/// The reports' counting, in SQL on both databases: the queries return small grouped counts (a histogram of score
/// changes, events and sessions per group, minutes per week), never a row per session. Groups are named by position
/// (`GROUP BY 1, 2`): an expression that is a constant (one depth band, one week) would otherwise be read as a position.
struct ReportStore {
    let sql: any SQLDatabase
    let p: ClinicalProtocol

    init(db: any Database, protocol p: ClinicalProtocol) throws {
        guard let sql = db as? any SQLDatabase else { throw DomainError.conflict("Reports need an SQL database.") }
        self.sql = sql
        self.p = p
    }

    private var isSQLite: Bool { sql.dialect.name == "sqlite" }

    /// The protocol's depth band of a depth expression, as `CASE`: the downtime bands, from the protocol's data.
    func band(_ depth: String) -> SQLQueryString {
        guard p.downtime.count > 1 else { return "\(literal: 0)" }
        var expression: SQLQueryString = "CASE"
        for (i, band) in p.downtime.enumerated().dropLast() {
            expression += " WHEN \(unsafeRaw: depth) <= \(literal: band.maxDepthMm) THEN \(literal: i)"
        }
        expression += " ELSE \(literal: max(p.downtime.count - 1, 0)) END"
        return expression
    }

    /// The seconds from `earlier` to `later` (two timestamp columns) on either database, as a double.
    func seconds(from earlier: String, to later: String) -> SQLQueryString {
        isSQLite ? "(\(unsafeRaw: later) - \(unsafeRaw: earlier))"
            : "CAST(EXTRACT(EPOCH FROM (\(unsafeRaw: later) - \(unsafeRaw: earlier))) AS DOUBLE PRECISION)"
    }

    /// The rows of a fact table a filter covers: `alias`'s clinic, day, location and practitioner columns.
    func covered(_ filter: ReportFilter, _ alias: String = "f", day: String = "day", location: String = "location_id",
                 practitioner: String = "practitioner_id") -> SQLQueryString {
        var clause: SQLQueryString = "\(unsafeRaw: alias).clinic_id = \(bind: filter.clinicID) AND \(unsafeRaw: alias).\(unsafeRaw: day) >= \(bind: filter.from.description)"
        clause += " AND \(unsafeRaw: alias).\(unsafeRaw: day) <= \(bind: filter.to.description)"
        if let id = filter.locationID { clause += " AND \(unsafeRaw: alias).\(unsafeRaw: location) = \(bind: id)" }
        if let id = filter.practitionerID { clause += " AND \(unsafeRaw: alias).\(unsafeRaw: practitioner) = \(bind: id)" }
        return clause
    }

    // MARK: Outcomes

    /// One group of completed series' scores: how many series had this change (last minus first) and final value.
    struct OutcomeCount: Sendable {
        var indication: String
        var band: Int
        var scale: String
        var rater: String
        /// Scored at two sessions or more: the change is a change.
        var paired: Bool
        var change: Int
        var last: Int
        var series: Int
    }

    /// Completed series (a patient's signed sessions reached the sessions their last chart's plan asks for) whose last
    /// session falls in the filter, by indication treated, the depth band of the deepest depth charted for it, scale and
    /// rater: the change from the first to the last scored session, and the last score.
    func outcomeCounts(_ filter: ReportFilter) async throws -> [OutcomeCount] {
        let query: SQLQueryString = """
            SELECT i.indication AS indication, \(band("i.deepest_mm")) AS band, o.scale AS scale, o.rater AS rater,
                CASE WHEN o.scored >= 2 THEN 1 ELSE 0 END AS paired, o.last_value - o.first_value AS change, o.last_value AS last_value,
                COUNT(*) AS series
            FROM series_fact s
            JOIN series_indication_fact i ON i.patient_id = s.patient_id
            JOIN series_score_fact o ON o.patient_id = s.patient_id
            WHERE \(covered(filter, "s", day: "last_day", location: "last_location_id", practitioner: "last_practitioner_id")) AND s.done >= s.planned
            GROUP BY 1, 2, 3, 4, 5, 6, 7
            """
        return try await sql.raw(query).all().map { row in
            OutcomeCount(indication: try row.decode(column: "indication", as: String.self), band: try row.decode(column: "band", as: Int.self),
                         scale: try row.decode(column: "scale", as: String.self), rater: try row.decode(column: "rater", as: String.self),
                         paired: try row.decode(column: "paired", as: Int.self) == 1, change: try row.decode(column: "change", as: Int.self),
                         last: try row.decode(column: "last_value", as: Int.self), series: try row.decode(column: "series", as: Int.self))
        }
    }

    // MARK: Safety

    /// Sessions, adverse events and open events for one group.
    struct SafetyCount: Sendable {
        var key: String
        var sessions: Int
        var events: Int
        var open: Int
    }

    enum SafetyDimension: String, CaseIterable, Sendable {
        case band, zone, pen, lot
    }

    /// Sessions in the filter and the adverse events recorded against them, grouped by the deepest depth's band, by
    /// zone treated (an event counts for every zone of its session), by pen and by cartridge lot. Band, pen and lot come
    /// from one pass over the sessions (grouped by all three, added up here); zones from one over their zones.
    func safetyCounts(_ filter: ReportFilter) async throws -> [SafetyDimension: [SafetyCount]] {
        let events: SQLQueryString = """
            LEFT JOIN (
                SELECT chart_id, COUNT(*) AS events, SUM(CASE WHEN resolved_on IS NULL THEN 1 ELSE 0 END) AS open_events
                FROM adverse_event WHERE clinic_id = \(bind: filter.clinicID) AND chart_id IS NOT NULL GROUP BY chart_id
            ) e
            """
        let counts: SQLQueryString = "COUNT(*) AS sessions, CAST(COALESCE(SUM(e.events), 0) AS BIGINT) AS events, CAST(COALESCE(SUM(e.open_events), 0) AS BIGINT) AS open_events"
        let sessions: SQLQueryString = """
            SELECT \(band("f.deepest_mm")) AS band, f.device_id AS pen, f.lot_id AS lot, \(counts)
            FROM session_fact f \(events) ON e.chart_id = f.chart_id
            WHERE \(covered(filter))
            GROUP BY 1, 2, 3
            """
        var sums: [SafetyDimension: [String: SafetyCount]] = [:]
        func add(_ dimension: SafetyDimension, _ key: String, _ row: SQLRow) throws {
            var count = sums[dimension]?[key] ?? SafetyCount(key: key, sessions: 0, events: 0, open: 0)
            count.sessions += try row.decode(column: "sessions", as: Int.self)
            count.events += try row.decode(column: "events", as: Int.self)
            count.open += try row.decode(column: "open_events", as: Int.self)
            sums[dimension, default: [:]][key] = count
        }
        for row in try await sql.raw(sessions).all() {
            try add(.band, String(try row.decode(column: "band", as: Int.self)), row)
            try add(.pen, try row.decode(column: "pen", as: UUID?.self)?.uuidString ?? "", row)
            try add(.lot, try row.decode(column: "lot", as: UUID?.self)?.uuidString ?? "", row)
        }
        // The zone table repeats the session's day, location and practitioner: it is read alone.
        let zones: SQLQueryString = """
            SELECT z.zone AS zone, \(counts)
            FROM session_zone_fact z \(events) ON e.chart_id = z.chart_id
            WHERE \(covered(filter, "z"))
            GROUP BY 1
            """
        for row in try await sql.raw(zones).all() { try add(.zone, try row.decode(column: "zone", as: String.self), row) }
        return sums.mapValues { Array($0.values) }
    }

    /// Adverse events a check-in's rule opened for sessions in the filter: hours from the flag to a practitioner's first
    /// action (rounded down), or nil while none has acted.
    func flagToAction(_ filter: ReportFilter) async throws -> [Int?] {
        let query: SQLQueryString = """
            SELECT \(seconds(from: "a.opened_at", to: "a.first_action_at")) AS waited
            FROM adverse_event a JOIN session_fact f ON f.chart_id = a.chart_id
            WHERE a.opened_by_kind = 'check-in-rule' AND \(covered(filter))
            """
        return try await sql.raw(query).all().map { row in
            try row.decode(column: "waited", as: Double?.self).map { Int(($0 / 3600).rounded(.down)) }
        }
    }

    // MARK: Operations

    /// Booked minutes per practitioner, room and pen in each week of the filter (weeks from Monday, in the clinic's
    /// zone): appointments that held their time (booked, checked in, completed, no-show).
    struct BookedMinutes: Sendable {
        var practitionerID: UUID
        var roomID: UUID
        var penID: UUID?
        var week: Int
        var minutes: Int
    }

    func bookedMinutes(_ filter: ReportFilter, weeks: [CalendarDate]) async throws -> [BookedMinutes] {
        guard !weeks.isEmpty else { return [] }
        // The week an appointment falls in, by the Mondays' instants in the clinic's zone (exact across clock changes):
        // a balanced tree of CASEs, so a row takes about log2(weeks) comparisons, not one per week.
        let mondays = weeks.map { AftercareSchedule.bounds(of: $0, in: filter.zone).0 }
        func week(_ low: Int, _ high: Int) -> SQLQueryString {
            guard low < high else { return "\(literal: low)" }
            let middle = (low + high + 1) / 2
            return "CASE WHEN a.starts_at < \(bind: mondays[middle]) THEN \(week(low, middle - 1)) ELSE \(week(middle, high)) END"
        }
        let week = week(0, weeks.count - 1)
        let query: SQLQueryString = """
            SELECT a.practitioner_id AS practitioner, a.room_id AS room, a.pen_id AS pen, \(week) AS week,
                CAST(SUM(\(seconds(from: "a.starts_at", to: "a.ends_at"))) AS DOUBLE PRECISION) AS seconds
            FROM appointment a
            WHERE \(appointmentsCovered(filter)) AND a.status IN ('booked', 'checked-in', 'completed', 'no-show')
            GROUP BY 1, 2, 3, 4
            """
        return try await sql.raw(query).all().map { row in
            BookedMinutes(practitionerID: try row.decode(column: "practitioner", as: UUID.self), roomID: try row.decode(column: "room", as: UUID.self),
                          penID: try row.decode(column: "pen", as: UUID?.self), week: try row.decode(column: "week", as: Int.self),
                          minutes: Int(((try row.decode(column: "seconds", as: Double.self)) / 60).rounded()))
        }
    }

    /// Appointments starting in the filter (alias `a`).
    func appointmentsCovered(_ filter: ReportFilter, until: Date? = nil) -> SQLQueryString {
        var clause: SQLQueryString = "a.clinic_id = \(bind: filter.clinicID) AND a.starts_at >= \(bind: filter.start) AND a.starts_at < \(bind: until.map { min($0, filter.end) } ?? filter.end)"
        if let location = filter.locationID { clause += " AND a.location_id = \(bind: location)" }
        if let practitioner = filter.practitionerID { clause += " AND a.practitioner_id = \(bind: practitioner)" }
        return clause
    }

    struct Attendance: Sendable, Codable {
        /// Appointments due in the period up to now: attended, no-show or cancelled.
        var due: Int
        /// Past appointments still marked booked: nobody recorded how they went (not in `due`).
        var unrecorded: Int
        var attended: Int
        var noShows: Int
        var cancelled: Int
        /// Cancelled less than the clinic's notice before the start.
        var lateCancellations: Int
    }

    /// Appointments that started in the filter before now, by how they ended. A cancelled appointment is never changed
    /// again, so its last update is when it was cancelled.
    func attendance(_ filter: ReportFilter, noticeHours: Int) async throws -> Attendance {
        let query: SQLQueryString = """
            SELECT a.status AS status, COUNT(*) AS n,
                SUM(CASE WHEN a.status = 'cancelled' AND \(seconds(from: "a.updated_at", to: "a.starts_at")) < \(literal: noticeHours * 3600) THEN 1 ELSE 0 END) AS late
            FROM appointment a
            WHERE \(appointmentsCovered(filter, until: filter.now)) AND a.status IN ('booked', 'checked-in', 'completed', 'no-show', 'cancelled')
            GROUP BY a.status
            """
        var result = Attendance(due: 0, unrecorded: 0, attended: 0, noShows: 0, cancelled: 0, lateCancellations: 0)
        for row in try await sql.raw(query).all() {
            let n = try row.decode(column: "n", as: Int.self)
            let status = try row.decode(column: "status", as: String.self)
            if status == AppointmentStatus.booked.rawValue { result.unrecorded += n } else { result.due += n }
            switch status {
            case "no-show": result.noShows += n
            case "cancelled":
                result.cancelled += n
                result.lateCancellations += try row.decode(column: "late", as: Int.self)
            case "checked-in", "completed": result.attended += n
            default: break
            }
        }
        return result
    }

    /// Series that started in the filter: how many reached how many sessions of how many planned, and whether a
    /// treatment is booked ahead.
    struct SeriesCount: Sendable {
        var done: Int
        var planned: Int
        var bookedAhead: Bool
        var patients: Int
    }

    func seriesCounts(_ filter: ReportFilter) async throws -> [SeriesCount] {
        // A series belongs to the period, location and practitioner of its first session.
        let query: SQLQueryString = """
            WITH ahead AS (
                SELECT DISTINCT a.patient_id FROM appointment a JOIN service v ON v.id = a.service_id
                WHERE a.clinic_id = \(bind: filter.clinicID) AND v.kind = 'treatment' AND a.starts_at >= \(bind: filter.now)
                    AND a.status IN ('pending', 'booked') AND a.patient_id IS NOT NULL
            )
            SELECT s.done AS done, s.planned AS planned, CASE WHEN h.patient_id IS NULL THEN 0 ELSE 1 END AS ahead, COUNT(*) AS patients
            FROM series_fact s LEFT JOIN ahead h ON h.patient_id = s.patient_id
            WHERE \(covered(filter, "s", day: "first_day", location: "first_location_id", practitioner: "first_practitioner_id"))
            GROUP BY 1, 2, 3
            """
        return try await sql.raw(query).all().map { row in
            SeriesCount(done: try row.decode(column: "done", as: Int.self), planned: try row.decode(column: "planned", as: Int.self),
                        bookedAhead: try row.decode(column: "ahead", as: Int.self) == 1, patients: try row.decode(column: "patients", as: Int.self))
        }
    }

    /// Cartridges charted per lot since `since` (a day, in the clinic's zone).
    func cartridgesUsed(clinicID: UUID, since: CalendarDate) async throws -> [UUID: Int] {
        let query: SQLQueryString = """
            SELECT f.lot_id AS lot, COUNT(*) AS used FROM session_fact f
            WHERE f.clinic_id = \(bind: clinicID) AND f.day >= \(bind: since.description) AND f.lot_id IS NOT NULL GROUP BY f.lot_id
            """
        var used: [UUID: Int] = [:]
        for row in try await sql.raw(query).all() { used[try row.decode(column: "lot", as: UUID.self)] = try row.decode(column: "used", as: Int.self) }
        return used
    }
}
