import Foundation

/// The aftercare a signed session issues: the protocol's timeline laid on the clock from the moment the session
/// ended, with the downtime of the deepest depth actually charted. Hours are elapsed hours, so a daylight-saving
/// change never moves an instruction's end.
public struct AftercareSchedule: Codable, Sendable, Hashable {
    public struct Item: Codable, Sendable, Hashable {
        public var id: String
        public var instruction: String
        public var source: String
        public var fromHour: Int
        public var toHour: Int?
        public var starts: Date
        /// Absent: from `starts` on, with no end.
        public var ends: Date?

        /// In force at some moment of [from, to).
        public func overlaps(_ from: Date, _ to: Date) -> Bool {
            starts < to && (ends.map { $0 > from } ?? true)
        }
    }

    public var sessionEnd: Date
    public var deepestDepthMm: Double
    public var downtime: PlanResult.Downtime
    /// When the redness expected at this depth should be gone; redness reported later is flagged.
    public var rednessExpectedUntil: Date
    public var items: [Item]
    public var protocolVersion: String

    /// The schedule for a session that ended at `sessionEnd` with `deepestDepthMm` the deepest charted depth.
    public static func issue(sessionEnd: Date, deepestDepthMm: Double, protocol p: ClinicalProtocol) -> AftercareSchedule {
        let band = Planning.downtimeBand(for: deepestDepthMm, protocol: p)
        let downtime = PlanResult.Downtime(min: band.minDays, max: band.maxDays, depthMm: deepestDepthMm, source: band.source)
        let items = Planning.aftercare(downtime: downtime, protocol: p).map { item in
            Item(id: item.id, instruction: item.instruction, source: item.source, fromHour: item.fromHour, toHour: item.toHour,
                 starts: sessionEnd.addingTimeInterval(Double(item.fromHour) * 3600),
                 ends: item.toHour.map { sessionEnd.addingTimeInterval(Double($0) * 3600) })
        }
        return AftercareSchedule(sessionEnd: sessionEnd, deepestDepthMm: deepestDepthMm, downtime: downtime,
                                 rednessExpectedUntil: sessionEnd.addingTimeInterval(Double(band.maxDays) * 86_400),
                                 items: items, protocolVersion: p.version)
    }

    /// Day 1 is the calendar day of the session in the clinic's zone; the next calendar day is day 2.
    public func day(of instant: Date, in zone: TimeZone) -> Int {
        CalendarDate(sessionEnd, in: zone).days(until: CalendarDate(instant, in: zone)) + 1
    }

    /// The instructions in force at any moment of the calendar day that contains `instant`.
    public func items(onDayOf instant: Date, in zone: TimeZone) -> [Item] {
        let (from, to) = Self.bounds(of: CalendarDate(instant, in: zone), in: zone)
        return items.filter { $0.overlaps(from, to) }
    }

    /// Midnight to midnight of a calendar day in a zone (23 or 25 hours on a daylight-saving change).
    public static func bounds(of day: CalendarDate, in zone: TimeZone) -> (Date, Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let start = calendar.date(from: DateComponents(year: day.year, month: day.month, day: day.day))!
        let next = day.adding(days: 1)
        let end = calendar.date(from: DateComponents(year: next.year, month: next.month, day: next.day))!
        return (start, end)
    }
}
