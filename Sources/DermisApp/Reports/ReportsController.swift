import DermisCore
import Fluent
import Foundation
import Vapor

/// `/reports` for clinical staff and admins, the same figures as JSON under `/api/v1/reports/…` and as CSV.
struct ReportsController: RouteCollection {
    static let csvTables = ["outcomes", "safety", "utilisation", "attendance", "series", "cartridges"]

    func boot(routes: any RoutesBuilder) throws {
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Report")
        routes.get("reports", use: page).access(clinical)
        let api = routes.grouped("api", "v1", "reports")
        api.get("outcomes", use: outcomes).access(clinical)
        api.get("safety", use: safety).access(clinical)
        api.get("operations", use: operations).access(clinical)
        for table in Self.csvTables {
            api.get("\(table).csv") { req in try await csv(req, table: table) }.access(clinical)
        }
    }

    // MARK: Filters

    /// The filter a request asks for: `from` and `to` (days, default the 90 days to today), `location`, `practitioner`.
    /// The page's form sends an empty field for "all"; the API takes a parameter left out for that, and refuses an
    /// empty one.
    static func filter(_ req: Request, emptyMeansAll: Bool = false) async throws -> ReportFilter {
        guard let clinic = try await req.clinic() else { throw Abort(.notFound, reason: "No clinic is set up.") }
        let clinicID = try req.staff().clinicID
        let now = req.dermis.clock.now()
        let today = CalendarDate(now, in: clinic.zone)
        func text(_ name: String) throws -> String? {
            let values = try req.queryValues(name)
            guard values.count <= 1 else { throw InvalidInput(path: name, problem: "give it once") }
            guard let first = values.first else { return nil }
            let value = first.value?.trimmingCharacters(in: .whitespaces) ?? ""
            if value.isEmpty && !emptyMeansAll { throw InvalidInput(path: name, problem: "must not be empty (leave it out for the default)") }
            return value.isEmpty ? nil : value
        }
        func day(_ name: String) throws -> CalendarDate? {
            guard let value = try text(name) else { return nil }
            guard let day = CalendarDate(iso: value) else { throw InvalidInput(path: name, problem: "must be a date YYYY-MM-DD") }
            return day
        }
        func id(_ name: String) throws -> UUID? {
            guard let value = try text(name) else { return nil }
            guard let id = UUID(uuidString: value) else { throw InvalidInput(path: name, problem: "must be the id (a UUID) of one of the clinic's \(name)s") }
            return id
        }
        let to = try day("to") ?? today
        let from = try day("from") ?? to.adding(days: -89)
        if from > to { throw InvalidInput(path: "from", problem: "must not be after to (\(to))") }
        if from.days(until: to) >= 731 { throw InvalidInput(path: "to", problem: "a report covers at most two years (731 days) from \(from)") }
        let location = try id("location")
        if let location, try await Location.query(on: req.db).filter(\.$id == location).filter(\.$clinic.$id == clinicID).first() == nil {
            throw InvalidInput(path: "location", problem: "is not a location of this clinic")
        }
        let practitioner = try id("practitioner")
        if let practitioner, try await StaffUser.query(on: req.db).filter(\.$id == practitioner).filter(\.$clinic.$id == clinicID).first() == nil {
            throw InvalidInput(path: "practitioner", problem: "is not a member of this clinic's staff")
        }
        return ReportFilter(clinicID: clinicID, from: from, to: to, locationID: location, practitionerID: practitioner, zone: clinic.zone, now: now)
    }

    static func reports(_ req: Request, emptyMeansAll: Bool = false) async throws -> ClinicReports {
        try ClinicReports(db: req.db, filter: try await filter(req, emptyMeansAll: emptyMeansAll), protocol: req.dermis.clinicalProtocol)
    }

    static func noticeHours(_ req: Request) async throws -> Int {
        try await req.clinic()?.cancellationNoticeHours ?? Clinic.defaultNoticeHours
    }

    /// The safety report, audited once per patient whose open event it lists.
    static func safety(_ reports: ClinicReports, _ req: Request) async throws -> ClinicReports.SafetyReport {
        let report = try await reports.safety()
        let ids = report.openEvents.map(\.id)
        if !ids.isEmpty {
            let patients = try await AdverseEvent.query(on: req.db).filter(\.$id ~~ ids).all().map(\.$patient.id)
            try await req.auditMany(.read, objectType: "AdverseEvent", objectID: nil, patientIDs: Array(Set(patients)))
        }
        return report
    }

    // MARK: JSON

    func outcomes(req: Request) async throws -> ClinicReports.OutcomesReport { try await Self.reports(req).outcomes() }
    func safety(req: Request) async throws -> ClinicReports.SafetyReport { try await Self.safety(try await Self.reports(req), req) }
    func operations(req: Request) async throws -> ClinicReports.OperationsReport {
        try await Self.reports(req).operations(noticeHours: try await Self.noticeHours(req))
    }

    // MARK: CSV

    func csv(_ req: Request, table: String) async throws -> Response {
        let reports = try await Self.reports(req)
        var rows: [[String]]
        func figure(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "" }
        switch table {
        case "outcomes":
            rows = [["indication", "depth_band", "scale", "rater", "measure", "n", "median", "q1", "q3", "min", "max", "small_group"]]
            rows += try await reports.outcomes().groups.map {
                [$0.indication, $0.bandLabel, $0.scale, $0.rater, $0.measure, String($0.n), figure($0.median), figure($0.q1), figure($0.q3),
                 figure($0.min), figure($0.max), String($0.smallGroup)]
            }
        case "safety":
            rows = [["dimension", "key", "label", "sessions", "events", "open", "per_100_sessions", "small_group"]]
            // The CSV has counts only, no event or patient: nothing here reads a patient's record.
            for table in try await reports.safety().tables {
                rows += table.rows.map { [table.dimension, $0.key, $0.label, String($0.sessions), String($0.events), String($0.open), figure($0.per100Sessions), String($0.smallGroup)] }
            }
        case "utilisation":
            rows = [["kind", "id", "label", "week", "booked_minutes", "available_minutes", "percent"]]
            for row in try await reports.utilisation(weeks: ReportMath.weekStarts(from: reports.filter.from, to: reports.filter.to)) {
                rows += row.weeks.map { [row.kind, row.id.uuidString, row.label, $0.week, String($0.bookedMinutes), String($0.availableMinutes), figure($0.percent)] }
            }
        case "attendance":
            let a = try await reports.attendance(noticeHours: try await Self.noticeHours(req))
            rows = [["due", "unrecorded", "attended", "no_shows", "cancelled", "late_cancellations", "no_show_percent", "late_cancellation_percent", "notice_hours"],
                    [String(a.due), String(a.unrecorded), String(a.attended), String(a.noShows), String(a.cancelled), String(a.lateCancellations), figure(a.noShowPercent),
                     figure(a.lateCancellationPercent), String(a.noticeHours)]]
        case "series":
            rows = [["session", "reached", "stopped_after"]]
            rows += try await reports.series().steps.map { [String($0.session), String($0.reached), String($0.stoppedAfter)] }
        default:
            rows = [["lot_number", "expiry", "received", "remaining", "used_in_window", "days_to_expiry", "nearing_expiry", "usable", "problem"]]
            rows += try await reports.cartridges().lots.map {
                [$0.lotNumber, $0.expiry, String($0.received), String($0.remaining), String($0.usedInWindow), $0.daysToExpiry.map(String.init) ?? "",
                 String($0.nearingExpiry), String($0.usable), $0.problem ?? ""]
            }
        }
        let name = "\(table)-\(reports.filter.from)-\(reports.filter.to).csv"
        return PatientCSVController.csvResponse(name, .init(string: rows.map(CSV.line).joined()))
    }

    // MARK: The page

    struct SVGBar: Encodable {
        let label: String
        let text: String
        let y: String
        let textY: String
        let width: String
        let valueX: String
        let marked: Bool
    }

    struct SVGBars: Encodable {
        let id: String
        let title: String
        let width: Int
        let height: String
        let labelWidth: String
        let bars: [SVGBar]
    }

    struct SVGInterval: Encodable {
        let label: String
        let text: String
        let y: String
        let low: String
        let mid: String
        let high: String
        let marked: Bool
    }

    struct SVGTick: Encodable {
        let x: String
        let label: String
    }

    struct SVGIntervals: Encodable {
        let id: String
        let title: String
        let width: Int
        let height: String
        let axisY: String
        let figureX: String
        let zeroX: String?
        let ticks: [SVGTick]
        let rows: [SVGInterval]
    }

    struct ReportPage: Encodable {
        let page: PageHeader
        let from: String
        let to: String
        let locations: [Option]
        let practitioners: [Option]
        let query: String
        let csvTables: [String]
        let outcomes: ClinicReports.OutcomesReport
        let outcomeCharts: [SVGIntervals]
        let safety: ClinicReports.SafetyReport
        let safetyCharts: [SVGBars]
        let operations: ClinicReports.OperationsReport
        let operationsCharts: [SVGBars]
        let errors: [ErrorLine]
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func bars(_ id: String, _ title: String, _ rows: [(label: String, value: Double, text: String, marked: Bool)], scaleMax: Double? = nil) -> SVGBars {
        let chart = BarChart(rows, scaleMax: scaleMax)
        return SVGBars(id: id, title: title, width: Int(BarChart.width), height: f(chart.height), labelWidth: f(BarChart.labelWidth - 8),
                       bars: chart.bars.map {
                           SVGBar(label: $0.label, text: $0.text, y: f($0.y), textY: f($0.y + BarChart.barHeight - 3), width: f($0.width),
                                  valueX: f(BarChart.labelWidth + $0.width + 6), marked: $0.marked)
                       })
    }

    static func outcomeCharts(_ report: ClinicReports.OutcomesReport, _ p: ClinicalProtocol) -> [SVGIntervals] {
        let byScale = Dictionary(grouping: report.groups, by: { "\($0.scale)|\($0.measure)" })
        return byScale.keys.sorted().compactMap { key in
            guard let groups = byScale[key], let first = groups.first, let scale = p.outcomeScale(first.scale) else { return nil }
            let span = Double(scale.max - scale.min)
            let axis = first.measure == "final" ? Double(scale.min)...Double(scale.max) : -span...span
            let chart = IntervalChart(groups.map {
                (label: "\($0.indicationName), \($0.bandLabel)\($0.rater == "patient" ? " (patient)" : "")", low: $0.q1, mid: $0.median, high: $0.q3,
                 text: "median \(formatFigure($0.median)) (IQR \(formatFigure($0.q1))–\(formatFigure($0.q3))), n=\($0.n)\($0.smallGroup ? " small" : "")",
                 marked: $0.smallGroup)
            }, axis: axis)
            let title = first.measure == "final" ? "\(first.scaleName): last rating (\(first.better))" : "\(first.scaleName): change first → last session (\(first.better))"
            return SVGIntervals(id: "chart-\(first.scale)", title: title, width: Int(IntervalChart.width), height: f(chart.height),
                                axisY: f(chart.height - 18), figureX: f(IntervalChart.width - IntervalChart.valueWidth + 12), zeroX: chart.zeroX.map(f),
                                ticks: chart.ticks.map { SVGTick(x: f($0.x), label: $0.label) },
                                rows: chart.rows.map { SVGInterval(label: $0.label, text: $0.text, y: f($0.y), low: f($0.low), mid: f($0.mid), high: f($0.high), marked: $0.marked) })
        }
    }

    func page(req: Request) async throws -> Response {
        let clinicID = try req.staff().clinicID
        let locations = try await Location.query(on: req.db).filter(\.$clinic.$id == clinicID).sort(\.$name).all()
        let practitioners = try await StaffUser.query(on: req.db).filter(\.$clinic.$id == clinicID).filter(\.$role == StaffRole.practitioner.rawValue).sort(\.$name).all()
        let reports: ClinicReports
        var errors: [ErrorLine] = []
        do {
            reports = try await Self.reports(req, emptyMeansAll: true)
        } catch let invalid as InvalidInput {
            // The page answers a bad filter with the default report and the problem named, as a 422.
            errors = ErrorLine.list(invalid)
            guard let clinic = try await req.clinic() else { throw invalid }
            let now = req.dermis.clock.now()
            let today = CalendarDate(now, in: clinic.zone)
            reports = try ClinicReports(db: req.db, filter: ReportFilter(clinicID: clinicID, from: today.adding(days: -89), to: today, zone: clinic.zone, now: now),
                                        protocol: req.dermis.clinicalProtocol)
        }
        let filter = reports.filter
        let p = req.dermis.clinicalProtocol
        let outcomes = try await reports.outcomes()
        let safety = try await Self.safety(reports, req)
        let operations = try await reports.operations(noticeHours: try await Self.noticeHours(req))
        let perBand = safety.tables.first { $0.dimension == "band" }?.rows.sorted { $0.key < $1.key } ?? []
        let perZone = safety.tables.first { $0.dimension == "zone" }?.rows ?? []
        func rate(_ row: ClinicReports.SafetyRow) -> (label: String, value: Double, text: String, marked: Bool) {
            (label: row.label, value: row.per100Sessions ?? 0,
             text: "\(formatFigure(row.per100Sessions ?? 0)) per 100 (\(row.events)/\(row.sessions))\(row.smallGroup ? " small" : "")", marked: row.smallGroup)
        }
        let safetyCharts = [
            Self.bars("chart-safety-band", "Adverse events per 100 sessions, by depth band", perBand.map(rate)),
            Self.bars("chart-safety-zone", "Adverse events per 100 sessions, by zone", perZone.map(rate)),
        ]
        let operationsCharts = [
            Self.bars("chart-utilisation", "Utilisation over the period (booked ÷ available minutes)",
                      operations.utilisation.map { row in
                          (label: row.label, value: row.percent ?? 0, text: row.percent.map { "\(formatFigure($0)) %" } ?? "no hours", marked: row.percent == nil)
                      }, scaleMax: 100),
            Self.bars("chart-series", "Series started in the period: how many reached each session",
                      operations.series.steps.map { (label: "Session \($0.session)", value: Double($0.reached), text: "\($0.reached) reached, \($0.stoppedAfter) stopped", marked: false) }),
        ]
        var items: [URLQueryItem] = [.init(name: "from", value: filter.from.description), .init(name: "to", value: filter.to.description)]
        if let id = filter.locationID { items.append(.init(name: "location", value: id.uuidString)) }
        if let id = filter.practitionerID { items.append(.init(name: "practitioner", value: id.uuidString)) }
        var components = URLComponents()
        components.queryItems = items
        let view = try await req.view.render("reports", ReportPage(
            page: try await PageHeader(req, title: "Reports"), from: filter.from.description, to: filter.to.description,
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == filter.locationID) },
            practitioners: practitioners.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == filter.practitionerID) },
            query: components.percentEncodedQuery ?? "", csvTables: Self.csvTables, outcomes: outcomes, outcomeCharts: Self.outcomeCharts(outcomes, p),
            safety: safety, safetyCharts: safetyCharts, operations: operations, operationsCharts: operationsCharts, errors: errors))
        return try await view.response(errors.isEmpty ? .ok : .unprocessableEntity, for: req)
    }
}

/// A figure for a person: whole numbers without decimals, others to one decimal.
func formatFigure(_ value: Double) -> String {
    value == value.rounded() ? String(format: "%.0f", value) : String(format: "%.1f", value)
}
