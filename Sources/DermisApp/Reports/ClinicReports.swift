import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// The clinic's three reports, as JSON (`/api/v1/reports/…`), CSV and the `/reports` page: the store counts in SQL,
/// `ReportMath` turns the counts into figures, and every figure says what it counts.
struct ClinicReports {
    let db: any Database
    let store: ReportStore
    let filter: ReportFilter
    let p: ClinicalProtocol

    init(db: any Database, filter: ReportFilter, protocol p: ClinicalProtocol) throws {
        self.db = db
        self.store = try ReportStore(db: db, protocol: p)
        self.filter = filter
        self.p = p
    }

    struct Period: Content {
        let from: String
        let to: String
        let locationID: UUID?
        let practitionerID: UUID?
    }

    var period: Period { Period(from: filter.from.description, to: filter.to.description, locationID: filter.locationID, practitionerID: filter.practitionerID) }

    struct Band: Content {
        let index: Int
        let label: String
        let source: String
    }

    /// The protocol's depth bands (its downtime bands), labelled by depth.
    var bands: [Band] {
        var previous: Double?
        return p.downtime.enumerated().map { i, band in
            defer { previous = band.maxDepthMm }
            let label = previous.map { "over \(formatMillimetres($0)) to \(formatMillimetres(band.maxDepthMm)) mm" }
                ?? "up to \(formatMillimetres(band.maxDepthMm)) mm"
            return Band(index: i, label: label, source: band.source)
        }
    }

    // MARK: Outcomes

    struct OutcomeGroup: Content {
        let indication: String
        let indicationName: String
        let band: Int
        let bandLabel: String
        let scale: String
        let scaleName: String
        let rater: String
        /// `change` (last minus first score) or `final` (the last rating, for a scale that rates the change itself).
        let measure: String
        let better: String
        let n: Int
        let median: Double
        let q1: Double
        let q3: Double
        let min: Double
        let max: Double
        let smallGroup: Bool
        let source: String
    }

    struct OutcomesReport: Content {
        let period: Period
        let bands: [Band]
        let groups: [OutcomeGroup]
        let definitions: [String]
    }

    func outcomes() async throws -> OutcomesReport {
        let counts = try await store.outcomeCounts(filter)
        var histograms: [String: (key: (String, Int, String, String), values: [Int: Int])] = [:]
        for count in counts {
            guard let scale = p.outcomeScale(count.scale) else { continue }
            let final = scale.comparesWithBaseline == true
            if !final {
                // A change needs the indication's own scale, scored at two sessions at least.
                guard scale.indications?.contains(count.indication) == true, count.paired else { continue }
            }
            let id = "\(count.indication)|\(count.band)|\(count.scale)|\(count.rater)"
            histograms[id, default: ((count.indication, count.band, count.scale, count.rater), [:])].values[final ? count.last : count.change, default: 0] += count.series
        }
        let indicationOrder = Dictionary(p.indications.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
        let scaleOrder = Dictionary(p.outcomeScales.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
        let bandLabels = bands
        let groups = histograms.values.compactMap { entry -> OutcomeGroup? in
            let (indication, band, scaleID, rater) = entry.key
            guard let scale = p.outcomeScale(scaleID), let summary = ReportMath.summary(entry.values) else { return nil }
            let final = scale.comparesWithBaseline == true
            return OutcomeGroup(
                indication: indication, indicationName: p.indications.first { $0.id == indication }?.displayName ?? indication,
                band: band, bandLabel: band < bandLabels.count ? bandLabels[band].label : "?", scale: scaleID, scaleName: scale.name, rater: rater,
                measure: final ? "final" : "change",
                better: final ? "lower is better (\(scale.label(for: scale.min) ?? String(scale.min)))"
                    : (scale.better == "lower" ? "a fall is an improvement" : "a rise is an improvement"),
                n: summary.n, median: summary.median, q1: summary.q1, q3: summary.q3, min: summary.min, max: summary.max,
                smallGroup: summary.small, source: scale.source)
        }.sorted {
            (indicationOrder[$0.indication] ?? 99, $0.band, scaleOrder[$0.scale] ?? 99, $0.rater) < (indicationOrder[$1.indication] ?? 99, $1.band, scaleOrder[$1.scale] ?? 99, $1.rater)
        }
        return OutcomesReport(period: period, bands: bandLabels, groups: groups, definitions: [
            "A series is a patient's signed sessions; it is completed when they reach the sessions the plan of its last session asks for, and it is counted in the period, location and practitioner of its last session.",
            "Each series counts under every indication its plan treated, in the depth band of the deepest depth charted for that indication (the protocol's downtime bands).",
            "Change is the last scored session's score minus the first's, on the indication's own scale (Goodman & Baron for acne scars; Glogau and the Fitzpatrick wrinkle class for lines), for series scored at two sessions or more.",
            "GAIS rates the change since before treatment itself, so its figure is the last rating (1 very much improved … 5 worse), by practitioner and by patient.",
            "Median and interquartile range interpolate between order statistics (Hyndman & Fan type 7). Groups under \(ReportMath.smallGroup) series are marked small, never hidden.",
            "Pain and erythema are charted per session as tolerability, not outcomes, and are not shown here.",
        ])
    }

    // MARK: Safety

    struct SafetyRow: Content {
        let key: String
        let label: String
        let sessions: Int
        let events: Int
        let open: Int
        let per100Sessions: Double?
        let smallGroup: Bool
    }

    struct SafetyTable: Content {
        let dimension: String
        let title: String
        let rows: [SafetyRow]
    }

    struct OpenEvent: Content {
        let id: UUID
        let type: String
        let severity: String
        let onset: String
        let daysOpen: Int
        let openedBy: String
    }

    struct FlagToAction: Content {
        let flagged: Int
        let awaitingAction: Int
        let medianHours: Double?
        let q1Hours: Double?
        let q3Hours: Double?
        let maxHours: Double?
    }

    struct SafetyReport: Content {
        let period: Period
        let sessions: Int
        let events: Int
        let open: Int
        let per100Sessions: Double?
        let openEvents: [OpenEvent]
        let tables: [SafetyTable]
        let flagToAction: FlagToAction
        let definitions: [String]
    }

    func safety() async throws -> SafetyReport {
        var tables: [SafetyTable] = []
        var totals = (sessions: 0, events: 0, open: 0)
        let devices = Dictionary(try await Device.query(on: db).filter(\.$clinic.$id == filter.clinicID).all().map { ($0.id!.uuidString, "\($0.model) \($0.serial)") },
                                 uniquingKeysWith: { a, _ in a })
        let lots = Dictionary(try await CartridgeLot.query(on: db).filter(\.$clinic.$id == filter.clinicID).all().map { ($0.id!.uuidString, "lot \($0.lotNumber)") },
                              uniquingKeysWith: { a, _ in a })
        let bandLabels = bands
        let all = try await store.safetyCounts(filter)
        for dimension in ReportStore.SafetyDimension.allCases {
            let counts = all[dimension] ?? []
            if dimension == .band { totals = counts.reduce((0, 0, 0)) { ($0.0 + $1.sessions, $0.1 + $1.events, $0.2 + $1.open) } }
            let rows = counts.map { count in
                let label: String = switch dimension {
                case .band: Int(count.key).flatMap { $0 < bandLabels.count ? bandLabels[$0].label : nil } ?? count.key
                case .zone: p.zone(count.key)?.displayName ?? count.key
                case .pen: devices[count.key] ?? (count.key.isEmpty ? "no pen recorded" : count.key)
                case .lot: lots[count.key] ?? (count.key.isEmpty ? "no lot recorded" : count.key)
                }
                return SafetyRow(key: count.key, label: label, sessions: count.sessions, events: count.events, open: count.open,
                                 per100Sessions: tenth(ReportMath.per100(count.events, sessions: count.sessions)), smallGroup: count.sessions < ReportMath.smallGroup)
            }.sorted { ($1.open, $1.per100Sessions ?? 0, $0.label) < ($0.open, $0.per100Sessions ?? 0, $1.label) }
            let title = switch dimension {
            case .band: "By depth band (deepest zone of the session)"
            case .zone: "By zone treated"
            case .pen: "By pen"
            case .lot: "By cartridge lot"
            }
            tables.append(SafetyTable(dimension: dimension.rawValue, title: title, rows: rows))
        }
        let today = CalendarDate(filter.now, in: filter.zone)
        var open = AdverseEvent.query(on: db).filter(\.$clinic.$id == filter.clinicID).filter(\.$resolvedOn == nil).sort(\.$openedAt)
        if filter.locationID != nil || filter.practitionerID != nil {
            // The sessions of that location or practitioner, as a subquery: a chain's list of them could be long.
            var sessions: SQLQueryString = "chart_id IN (SELECT f.chart_id FROM session_fact f WHERE f.clinic_id = \(bind: filter.clinicID)"
            if let location = filter.locationID { sessions += " AND f.location_id = \(bind: location)" }
            if let practitioner = filter.practitionerID { sessions += " AND f.practitioner_id = \(bind: practitioner)" }
            sessions += ")"
            open = open.filter(.sql(embed: sessions))
        }
        let openEvents = try await open.all().map { event in
            OpenEvent(id: event.id!, type: event.type, severity: event.severity, onset: event.onset,
                      daysOpen: CalendarDate(iso: event.onset).map { $0.days(until: today) } ?? 0,
                      openedBy: event.openedByKind == "check-in-rule" ? "a check-in's rule" : "a practitioner")
        }
        let waits = try await store.flagToAction(filter)
        var hours: [Int: Int] = [:]
        for wait in waits.compactMap({ $0 }) { hours[wait, default: 0] += 1 }
        let summary = ReportMath.summary(hours)
        return SafetyReport(
            period: period, sessions: totals.sessions, events: totals.events, open: totals.open,
            per100Sessions: tenth(ReportMath.per100(totals.events, sessions: totals.sessions)), openEvents: openEvents, tables: tables,
            flagToAction: FlagToAction(flagged: waits.count, awaitingAction: waits.filter { $0 == nil }.count, medianHours: summary?.median,
                                       q1Hours: summary?.q1, q3Hours: summary?.q3, maxHours: summary?.max),
            definitions: [
                "Sessions are signed charts in the period (the day the session was charted); events are the adverse events recorded against them, whenever recorded.",
                "By zone, an event counts for every zone of its session: the record does not say which zone it arose in.",
                "Open events (not resolved) come first, in every table and in the list, whatever the period.",
                "Flag to action: for events a check-in's rule opened, the whole hours from the check-in to the practitioner's first edit of the event.",
                "Groups under \(ReportMath.smallGroup) sessions are marked small: one event moves their rate a lot.",
            ])
    }

    // MARK: Operations

    struct WeekCell: Content {
        let week: String
        let bookedMinutes: Int
        let availableMinutes: Int
        let percent: Double?
    }

    struct UtilisationRow: Content {
        let kind: String
        let id: UUID
        let label: String
        let weeks: [WeekCell]
        let bookedMinutes: Int
        let availableMinutes: Int
        let percent: Double?
    }

    struct AttendanceFigures: Content {
        let due: Int
        let unrecorded: Int
        let attended: Int
        let noShows: Int
        let cancelled: Int
        let lateCancellations: Int
        let noShowPercent: Double?
        let lateCancellationPercent: Double?
        let noticeHours: Int
    }

    struct SeriesFigures: Content {
        struct Step: Content {
            let session: Int
            let reached: Int
            /// Stopped here: not completed, no treatment booked ahead.
            let stoppedAfter: Int
        }

        let started: Int
        let completed: Int
        let bookedAhead: Int
        let stopped: Int
        let completedPercent: Double?
        let steps: [Step]
    }

    struct LotFigures: Content {
        let id: UUID
        let lotNumber: String
        let expiry: String
        let received: Int
        let remaining: Int
        let usedInWindow: Int
        let daysToExpiry: Int?
        let nearingExpiry: Bool
        let usable: Bool
        let problem: String?
    }

    struct CartridgeFigures: Content {
        let windowDays: Int
        let usedInWindow: Int
        let usableRemaining: Int
        let stockDays: Double?
        let expiryWarningDays: Int
        let lots: [LotFigures]
    }

    struct OperationsReport: Content {
        let period: Period
        let weeks: [String]
        let utilisation: [UtilisationRow]
        let attendance: AttendanceFigures
        let series: SeriesFigures
        let cartridges: CartridgeFigures
        let definitions: [String]
    }

    /// Days of use a stock projection looks back over, and how near an expiry is flagged.
    static let usageWindowDays = 30
    static let expiryWarningDays = 30

    func operations(noticeHours: Int) async throws -> OperationsReport {
        let weeks = ReportMath.weekStarts(from: filter.from, to: filter.to)
        return OperationsReport(period: period, weeks: weeks.map(\.description), utilisation: try await utilisation(weeks: weeks),
                                attendance: try await attendance(noticeHours: noticeHours), series: try await series(),
                                cartridges: try await cartridges(), definitions: [
            "Utilisation is booked minutes (appointments booked, checked in, completed or no-show) over available minutes, per week from Monday in the clinic's zone; weeks are clipped to the period.",
            "Available minutes: a practitioner's working hours less breaks and closure days; a room or pen is available while anyone works at its location (rooms and pens are left out when one practitioner is chosen). Leave is not subtracted.",
            "No-show and late-cancellation rates are over appointments due in the period up to now (attended, no-show or cancelled); late means cancelled less than \(noticeHours) hours before the start (the clinic's notice period). Past appointments still marked booked are counted apart as unrecorded.",
            "A series starts with a patient's first signed session (in the period, at the location, by the practitioner); it is completed when it reaches the sessions its last plan asks for. Stopped: not completed and no treatment booked ahead.",
            "Stock in days: usable cartridges left (not expired, recalled or used up) at the rate charted over the last \(Self.usageWindowDays) days. Lots expiring within \(Self.expiryWarningDays) days are flagged.",
        ])
    }

    /// Each practitioner's, room's and pen's booked and available minutes per week of `weeks`.
    func utilisation(weeks: [CalendarDate]) async throws -> [UtilisationRow] {
        let booked = try await store.bookedMinutes(filter, weeks: weeks)
        var locations = try await Location.query(on: db).filter(\.$clinic.$id == filter.clinicID).all()
        if let only = filter.locationID { locations = locations.filter { $0.id == only } }
        let locationIDs = locations.compactMap(\.id)
        let hours = try await WorkingHours.query(on: db).filter(\.$location.$id ~~ locationIDs).all()
        let closures = try await Closure.query(on: db).filter(\.$location.$id ~~ locationIDs).all()
        let closed = Set(closures.map { "\($0.$location.id)|\($0.day)" })
        let staff = Dictionary(try await StaffUser.query(on: db).filter(\.$clinic.$id == filter.clinicID).all().map { ($0.id!, $0.name) },
                               uniquingKeysWith: { a, _ in a })
        // Rooms and pens are shared: with a practitioner filter their figures would mix one person's bookings with
        // everyone's hours, so they are left out then.
        let shared = filter.practitionerID == nil
        let rooms = shared ? try await Room.query(on: db).filter(\.$location.$id ~~ locationIDs).filter(\.$active == true).all() : []
        let pens = shared ? try await Device.query(on: db).filter(\.$clinic.$id == filter.clinicID).filter(\.$active == true).all()
            .filter { pen in pen.$location.id.map(locationIDs.contains) ?? false } : []

        /// The days of a week inside the period.
        func days(of week: CalendarDate) -> [CalendarDate] {
            (0..<7).map { week.adding(days: $0) }.filter { $0 >= filter.from && $0 <= filter.to }
        }
        // Each person's working windows per location and weekday (hours less breaks), worked out once: a day's
        // availability is then a look-up, closures aside.
        struct Key: Hashable { let staff: UUID; let location: UUID; let weekday: Int }
        var windows: [Key: [(start: Int, end: Int)]] = [:]
        for (key, rows) in Dictionary(grouping: hours, by: { Key(staff: $0.$staff.id, location: $0.$location.id, weekday: $0.weekday) }) {
            let open = rows.filter { $0.kind == "hours" }.map { (start: $0.startMinute, end: $0.endMinute) }
            let breaks = rows.filter { $0.kind == "break" }.map { (start: $0.startMinute, end: $0.endMinute) }
            windows[key] = ReportMath.subtract(breaks, from: open)
        }
        /// Minutes available on a day at a location to the staff given, or to anyone working there (the union: a room
        /// is available while anyone works); none when the location is closed.
        var memo: [String: Int] = [:]
        func available(_ person: UUID?, at location: UUID, on day: CalendarDate) -> Int {
            guard !closed.contains("\(location)|\(day)") else { return 0 }
            let key = "\(person?.uuidString ?? "*")|\(location)|\(day.isoWeekday)"
            if let known = memo[key] { return known }
            let minutes = ReportMath.unionMinutes(windows.filter { $0.key.location == location && $0.key.weekday == day.isoWeekday
                && (person == nil || $0.key.staff == person) }.flatMap(\.value))
            memo[key] = minutes
            return minutes
        }
        var bookedBy: [String: Int] = [:]
        for entry in booked {
            bookedBy["p|\(entry.practitionerID)|\(entry.week)", default: 0] += entry.minutes
            bookedBy["r|\(entry.roomID)|\(entry.week)", default: 0] += entry.minutes
            if let pen = entry.penID { bookedBy["d|\(pen)|\(entry.week)", default: 0] += entry.minutes }
        }
        func row(kind: String, id: UUID, label: String, availableOn: (CalendarDate) -> Int, bookedIn: (Int) -> Int) -> UtilisationRow {
            let cells = weeks.enumerated().map { i, week in
                let free = days(of: week).reduce(0) { $0 + availableOn($1) }
                let used = bookedIn(i)
                return WeekCell(week: week.description, bookedMinutes: used, availableMinutes: free,
                                percent: tenth(ReportMath.percent(Double(used), of: Double(free))))
            }
            let used = cells.reduce(0) { $0 + $1.bookedMinutes }, free = cells.reduce(0) { $0 + $1.availableMinutes }
            return UtilisationRow(kind: kind, id: id, label: label, weeks: cells, bookedMinutes: used, availableMinutes: free,
                                  percent: tenth(ReportMath.percent(Double(used), of: Double(free))))
        }
        var utilisation: [UtilisationRow] = []
        let practitionerIDs = Set(hours.map { $0.$staff.id }).filter { filter.practitionerID == nil || $0 == filter.practitionerID }
        for person in practitionerIDs.sorted(by: { (staff[$0] ?? "") < (staff[$1] ?? "") }) {
            utilisation.append(row(kind: "practitioner", id: person, label: staff[person] ?? "?",
                                   availableOn: { day in locationIDs.reduce(0) { $0 + available(person, at: $1, on: day) } },
                                   bookedIn: { bookedBy["p|\(person)|\($0)"] ?? 0 }))
        }
        let names = Dictionary(locations.map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
        for room in rooms.sorted(by: { ($0.$location.id.uuidString, $0.name) < ($1.$location.id.uuidString, $1.name) }) {
            let at = room.$location.id
            utilisation.append(row(kind: "room", id: room.id!, label: "\(room.name), \(names[at] ?? "")",
                                   availableOn: { available(nil, at: at, on: $0) },
                                   bookedIn: { bookedBy["r|\(room.id!)|\($0)"] ?? 0 }))
        }
        for pen in pens.sorted(by: { $0.serial < $1.serial }) {
            guard let at = pen.$location.id else { continue }
            utilisation.append(row(kind: "pen", id: pen.id!, label: "\(pen.model) \(pen.serial)",
                                   availableOn: { available(nil, at: at, on: $0) },
                                   bookedIn: { bookedBy["d|\(pen.id!)|\($0)"] ?? 0 }))
        }
        return utilisation
    }

    func attendance(noticeHours: Int) async throws -> AttendanceFigures {
        let counts = try await store.attendance(filter, noticeHours: noticeHours)
        return AttendanceFigures(
            due: counts.due, unrecorded: counts.unrecorded, attended: counts.attended, noShows: counts.noShows, cancelled: counts.cancelled,
            lateCancellations: counts.lateCancellations,
            noShowPercent: tenth(ReportMath.percent(Double(counts.noShows), of: Double(counts.due))),
            lateCancellationPercent: tenth(ReportMath.percent(Double(counts.lateCancellations), of: Double(counts.due))), noticeHours: noticeHours)
    }

    func series() async throws -> SeriesFigures {
        let series = try await store.seriesCounts(filter)
        let started = series.reduce(0) { $0 + $1.patients }
        let completed = series.filter { $0.done >= $0.planned }.reduce(0) { $0 + $1.patients }
        let ahead = series.filter { $0.done < $0.planned && $0.bookedAhead }.reduce(0) { $0 + $1.patients }
        let longest = series.map { max($0.done, $0.planned) }.max() ?? 0
        let steps = longest == 0 ? [] : (1...longest).map { k in
            SeriesFigures.Step(session: k, reached: series.filter { $0.done >= k }.reduce(0) { $0 + $1.patients },
                               stoppedAfter: series.filter { $0.done == k && $0.done < $0.planned && !$0.bookedAhead }.reduce(0) { $0 + $1.patients })
        }
        return SeriesFigures(started: started, completed: completed, bookedAhead: ahead, stopped: started - completed - ahead,
                             completedPercent: tenth(ReportMath.percent(Double(completed), of: Double(started))), steps: steps)
    }

    func cartridges() async throws -> CartridgeFigures {
        let today = CalendarDate(filter.now, in: filter.zone)
        let used = try await store.cartridgesUsed(clinicID: filter.clinicID, since: today.adding(days: -(Self.usageWindowDays - 1)))
        let lots = try await CartridgeLot.query(on: db).filter(\.$clinic.$id == filter.clinicID).sort(\.$expiry).all().map { lot in
            let expires = CalendarDate(iso: lot.expiry)
            let daysLeft = expires.map { today.days(until: $0) }
            let problem = lot.problem(on: today)
            return LotFigures(id: lot.id!, lotNumber: lot.lotNumber, expiry: lot.expiry, received: lot.quantityReceived, remaining: lot.quantityRemaining,
                              usedInWindow: used[lot.id!] ?? 0, daysToExpiry: daysLeft,
                              nearingExpiry: problem == nil && (daysLeft.map { $0 <= Self.expiryWarningDays } ?? false),
                              usable: problem == nil, problem: problem)
        }
        let usedInWindow = lots.reduce(0) { $0 + $1.usedInWindow }
        let remaining = lots.filter(\.usable).reduce(0) { $0 + $1.remaining }
        return CartridgeFigures(windowDays: Self.usageWindowDays, usedInWindow: usedInWindow, usableRemaining: remaining,
                                stockDays: tenth(ReportMath.stockDays(remaining: remaining, used: usedInWindow, windowDays: Self.usageWindowDays)),
                                expiryWarningDays: Self.expiryWarningDays, lots: lots)
    }

    /// Rates and percentages to one decimal, as the page and the JSON show them.
    func tenth(_ value: Double?) -> Double? { value.map { ($0 * 10).rounded() / 10 } }
}
