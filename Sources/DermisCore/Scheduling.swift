import Foundation

/// A time of day on a location's wall clock, in minutes from midnight (`09:30` is 570).
public struct ClockTime: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let minutes: Int

    public init?(minutes: Int) {
        guard (0...1440).contains(minutes) else { return nil }
        self.minutes = minutes
    }

    /// Exactly `HH:MM`, 00:00 to 24:00.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let h = Int(parts[0]), let m = Int(parts[1]),
              (0...24).contains(h), (0...59).contains(m), h < 24 || m == 0 else { return nil }
        self.init(minutes: h * 60 + m)
    }

    public var description: String { String(format: "%02d:%02d", minutes / 60, minutes % 60) }
    public static func < (lhs: ClockTime, rhs: ClockTime) -> Bool { lhs.minutes < rhs.minutes }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let time = ClockTime(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected a time HH:MM, got '\(text)'"))
        }
        self = time
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A weekly window on the wall clock: ISO weekday 1 (Monday) … 7 (Sunday), from `start` until `end`.
public struct WeeklyWindow: Hashable, Sendable, Codable {
    public var weekday: Int
    public var start: ClockTime
    public var end: ClockTime

    public init(weekday: Int, start: ClockTime, end: ClockTime) {
        self.weekday = weekday
        self.start = start
        self.end = end
    }
}

/// A half-open stretch of real time [start, end): back-to-back ranges do not overlap.
public struct TimeRange: Hashable, Sendable, Codable {
    public var start: Date
    public var end: Date

    public init(_ start: Date, _ end: Date) {
        self.start = start
        self.end = end
    }

    public func overlaps(_ other: TimeRange) -> Bool { start < other.end && other.start < end }
}

/// Everything availability needs at one location, loaded for the range searched.
public struct ScheduleInput: Sendable {
    public struct Practitioner: Sendable {
        public var id: String
        public var hours: [WeeklyWindow]
        public var breaks: [WeeklyWindow]
        public var leave: [TimeRange]
        /// The services this practitioner is qualified for.
        public var services: Set<String>

        public init(id: String, hours: [WeeklyWindow], breaks: [WeeklyWindow] = [], leave: [TimeRange] = [], services: Set<String>) {
            self.id = id
            self.hours = hours
            self.breaks = breaks
            self.leave = leave
            self.services = services
        }
    }

    /// A room or a pen, with times it cannot be used beyond its bookings (maintenance, out of service).
    public struct Resource: Sendable {
        public var id: String
        public var blocked: [TimeRange]

        public init(id: String, blocked: [TimeRange] = []) {
            self.id = id
            self.blocked = blocked
        }
    }

    public var timeZone: TimeZone
    /// Whole days the location is closed.
    public var closures: Set<CalendarDate>
    public var practitioners: [Practitioner]
    public var rooms: [Resource]
    public var pens: [Resource]
    /// What existing bookings hold, by resource id (practitioner, room or pen): start to end plus buffer.
    public var busy: [String: [TimeRange]]

    public init(timeZone: TimeZone, closures: Set<CalendarDate> = [], practitioners: [Practitioner], rooms: [Resource],
                pens: [Resource] = [], busy: [String: [TimeRange]] = [:]) {
        self.timeZone = timeZone
        self.closures = closures
        self.practitioners = practitioners
        self.rooms = rooms
        self.pens = pens
        self.busy = busy
    }
}

/// What is being booked and where to look.
public struct AvailabilityQuery: Sendable {
    public var service: String
    /// The appointment's own length; the buffer follows it (cleaning, notes) and is held too.
    public var minutes: Int
    public var bufferMinutes: Int
    public var needsPen: Bool
    /// First and last calendar day searched, in the location's zone.
    public var from: CalendarDate
    public var to: CalendarDate
    public var practitionerID: String?
    /// Start times step by this many minutes from the start of each working window.
    public var gridMinutes: Int
    /// No start before this instant (now; or the series interval).
    public var notBefore: Date?

    public init(service: String, minutes: Int, bufferMinutes: Int = 0, needsPen: Bool = false, from: CalendarDate, to: CalendarDate,
                practitionerID: String? = nil, gridMinutes: Int = 15, notBefore: Date? = nil) {
        self.service = service
        self.minutes = minutes
        self.bufferMinutes = bufferMinutes
        self.needsPen = needsPen
        self.from = from
        self.to = to
        self.practitionerID = practitionerID
        self.gridMinutes = gridMinutes
        self.notBefore = notBefore
    }
}

/// A start time with a practitioner, a room and (for treatments) a pen that are all free for the whole appointment.
public struct FreeSlot: Hashable, Sendable, Codable {
    public var start: Date
    public var end: Date
    public var practitionerID: String
    public var roomID: String
    public var penID: String?
}

/// Free start times: pure computation over what was loaded, so it is tested in milliseconds and benchmarked.
public enum Availability {
    /// Every free start, ordered by time then practitioner (in input order), each with the first free room and pen.
    public static func search(_ query: AvailabilityQuery, in input: ScheduleInput) -> [FreeSlot] {
        guard query.minutes > 0, query.gridMinutes > 0, query.bufferMinutes >= 0, query.from <= query.to else { return [] }
        var rooms = input.rooms.map { Track(merged((input.busy[$0.id] ?? []) + $0.blocked)) }
        var pens = query.needsPen ? input.pens.map { Track(merged((input.busy[$0.id] ?? []) + $0.blocked)) } : []
        let length = Double(query.minutes * 60)
        let hold = Double((query.minutes + query.bufferMinutes) * 60)
        let step = Double(query.gridMinutes * 60)
        let notBefore = query.notBefore?.timeIntervalSince1970 ?? -.infinity
        var slots: [(FreeSlot, Int)] = []
        let clock = WallClock(input.timeZone, from: query.from, to: query.to)
        for (index, practitioner) in eligible(query, input) {
            var own = Track(merged(input.busy[practitioner.id] ?? []))
            for r in rooms.indices { rooms[r].cursor = 0 }
            for p in pens.indices { pens[p].cursor = 0 }
            for window in workIntervals(practitioner, query: query, input: input, clock: clock) {
                let open = window.start.timeIntervalSince1970, close = window.end.timeIntervalSince1970
                // The next start on this window's grid at or after an instant.
                func onGrid(_ instant: Double) -> Double { instant <= open ? open : open + ((instant - open) / step).rounded(.up) * step }
                var t = onGrid(notBefore)
                // Each step either finds a slot or jumps past what blocks it: no start before a blocking hold's end can
                // be free for that resource, so the search skips bookings instead of testing every grid start.
                search: while t + length <= close {
                    if let end = own.blockingEnd(t, t + hold) {
                        t = onGrid(end)
                        continue
                    }
                    guard let room = Track.firstFree(&rooms, t, t + hold) else {
                        t = onGrid(Track.earliestRelease(&rooms, t, t + hold))
                        continue
                    }
                    var pen: Int?
                    if query.needsPen {
                        pen = Track.firstFree(&pens, t, t + hold)
                        if pen == nil {
                            t = onGrid(Track.earliestRelease(&pens, t, t + hold))
                            continue search
                        }
                    }
                    let start = Date(timeIntervalSince1970: t)
                    slots.append((FreeSlot(start: start, end: start.addingTimeInterval(length), practitionerID: practitioner.id,
                                           roomID: input.rooms[room].id, penID: pen.map { input.pens[$0].id }), index))
                    t += step
                }
            }
        }
        return ordered(slots)
    }

    /// One resource's merged holds in seconds, with a cursor that only moves forward while one practitioner's
    /// windows are searched (their starts only grow), so each hold is passed once.
    struct Track {
        let starts: [Double]
        let ends: [Double]
        var cursor = 0

        init(_ ranges: [TimeRange]) {
            starts = ranges.map(\.start.timeIntervalSince1970)
            ends = ranges.map(\.end.timeIntervalSince1970)
        }

        /// The end of the hold overlapping [a, b), if one does.
        mutating func blockingEnd(_ a: Double, _ b: Double) -> Double? {
            while cursor < ends.count && ends[cursor] <= a { cursor += 1 }
            return cursor < ends.count && starts[cursor] < b ? ends[cursor] : nil
        }

        /// The first track free for all of [a, b).
        static func firstFree(_ tracks: inout [Track], _ a: Double, _ b: Double) -> Int? {
            for i in tracks.indices where tracks[i].blockingEnd(a, b) == nil { return i }
            return nil
        }

        /// When none is free: the soonest one is released (no start before it can find one free).
        static func earliestRelease(_ tracks: inout [Track], _ a: Double, _ b: Double) -> Double {
            var soonest = Double.infinity
            for i in tracks.indices { if let end = tracks[i].blockingEnd(a, b) { soonest = min(soonest, end) } }
            return soonest
        }
    }

    /// The baseline: a minute-by-minute occupancy map of every resource, and every minute of every candidate checked.
    /// Same answers as `search`; kept for the benchmark and to check `search` against.
    public static func naiveSearch(_ query: AvailabilityQuery, in input: ScheduleInput) -> [FreeSlot] {
        guard query.minutes > 0, query.gridMinutes > 0, query.bufferMinutes >= 0, query.from <= query.to else { return [] }
        let (origin, _) = AftercareSchedule.bounds(of: query.from, in: input.timeZone)
        let (_, last) = AftercareSchedule.bounds(of: query.to, in: input.timeZone)
        let total = Int(last.timeIntervalSince(origin) / 60) + query.minutes + query.bufferMinutes + 1
        func minute(_ date: Date) -> Int { Int((date.timeIntervalSince(origin) / 60).rounded(.down)) }
        func occupancy(_ ranges: [TimeRange]) -> [Bool] {
            var map = [Bool](repeating: false, count: total)
            for range in ranges {
                let a = max(0, minute(range.start)), b = min(total, Int((range.end.timeIntervalSince(origin) / 60).rounded(.up)))
                if a < b { for m in a..<b { map[m] = true } }
            }
            return map
        }
        let rooms = input.rooms.map { ($0.id, occupancy((input.busy[$0.id] ?? []) + $0.blocked)) }
        let pens = input.pens.map { ($0.id, occupancy((input.busy[$0.id] ?? []) + $0.blocked)) }
        let hold = query.minutes + query.bufferMinutes
        func free(_ map: [Bool], from m: Int) -> Bool {
            for i in m..<(m + hold) where i < 0 || map[i] { return false }
            return true
        }
        var slots: [(FreeSlot, Int)] = []
        let clock = WallClock(input.timeZone, from: query.from, to: query.to)
        for (index, practitioner) in eligible(query, input) {
            let own = occupancy(input.busy[practitioner.id] ?? [])
            for window in workIntervals(practitioner, query: query, input: input, clock: clock) {
                var t = window.start
                while t.addingTimeInterval(Double(query.minutes * 60)) <= window.end {
                    let offset = Int(t.timeIntervalSince(window.start) / 60)
                    let m = minute(t)
                    if offset % query.gridMinutes == 0, query.notBefore.map({ t >= $0 }) ?? true, free(own, from: m),
                       let room = rooms.first(where: { free($0.1, from: m) }) {
                        let pen = pens.first { free($0.1, from: m) }
                        if !query.needsPen || pen != nil {
                            slots.append((FreeSlot(start: t, end: t.addingTimeInterval(Double(query.minutes * 60)), practitionerID: practitioner.id,
                                                   roomID: room.0, penID: query.needsPen ? pen!.0 : nil), index))
                        }
                    }
                    t = t.addingTimeInterval(60)
                }
            }
        }
        return ordered(slots)
    }

    /// Each practitioner's working time on one day (hours minus breaks, leave and closures), for a day calendar.
    public static func workingTime(on day: CalendarDate, in input: ScheduleInput) -> [(practitioner: String, ranges: [TimeRange])] {
        let query = AvailabilityQuery(service: "", minutes: 1, from: day, to: day)
        let clock = WallClock(input.timeZone, from: day, to: day)
        return input.practitioners.map { ($0.id, workIntervals($0, query: query, input: input, clock: clock)) }
    }

    /// The instant a location's wall clock shows `time` on `day`.
    public static func instant(_ day: CalendarDate, _ time: ClockTime, in zone: TimeZone) -> Date {
        WallClock(zone, from: day, to: day).instant(day, time)
    }

    /// The first free slot at or after `day` (searching `horizonDays` ahead), for series booking.
    public static func firstFree(_ query: AvailabilityQuery, on day: CalendarDate, horizonDays: Int, in input: ScheduleInput) -> FreeSlot? {
        var q = query
        q.from = day
        q.to = day.adding(days: horizonDays)
        return search(q, in: input).first
    }

    /// The practitioners who may do the service (or the one asked for), with their place in the input's order.
    static func eligible(_ query: AvailabilityQuery, _ input: ScheduleInput) -> [(Int, ScheduleInput.Practitioner)] {
        input.practitioners.enumerated().filter { $1.services.contains(query.service) && (query.practitionerID == nil || $1.id == query.practitionerID) }
            .map { ($0, $1) }
    }

    /// By time, then by the practitioners' order.
    static func ordered(_ slots: [(FreeSlot, Int)]) -> [FreeSlot] {
        slots.sorted { ($0.0.start, $0.1) < ($1.0.start, $1.1) }.map(\.0)
    }

    /// Wall-clock times of a location's days as instants, without a Calendar in the loop: the zone's offset is looked
    /// up once per daylight-saving change in the range (Foundation's Calendar costs tens of microseconds a call).
    struct WallClock {
        struct Change {
            let at: Date
            let before: Int
            let after: Int
        }

        let initialOffset: Int
        let changes: [Change]

        init(_ zone: TimeZone, from: CalendarDate, to: CalendarDate) {
            let start = Date(timeIntervalSince1970: Double(from.adding(days: -2).dayNumber) * 86_400)
            let end = Date(timeIntervalSince1970: Double(to.adding(days: 2).dayNumber) * 86_400)
            initialOffset = zone.secondsFromGMT(for: start)
            var changes: [Change] = []
            var cursor = start
            while let next = zone.nextDaylightSavingTimeTransition(after: cursor), next < end {
                changes.append(Change(at: next, before: zone.secondsFromGMT(for: next.addingTimeInterval(-1)), after: zone.secondsFromGMT(for: next)))
                cursor = next
            }
            self.changes = changes
        }

        /// The instant the wall clock shows `time` on `day`. A time skipped by a change moves on by the change, as
        /// the clocks do (01:30 on a spring-forward night is 02:30 summer time); a repeated time is its first occurrence.
        func instant(_ day: CalendarDate, _ time: ClockTime) -> Date {
            let local = Double(day.dayNumber * 86_400 + time.minutes * 60)
            var offset = initialOffset
            for change in changes {
                let before = Date(timeIntervalSince1970: local - Double(offset))
                if before < change.at { return before }
                if Date(timeIntervalSince1970: local - Double(change.after)) < change.at { return before }  // skipped
                offset = change.after
            }
            return Date(timeIntervalSince1970: local - Double(offset))
        }
    }

    /// A practitioner's working time on each day searched, in real time: weekly hours on the wall clock of the
    /// location's zone (so 09:00 stays 09:00 across a daylight-saving change), minus breaks, leave and closures.
    static func workIntervals(_ practitioner: ScheduleInput.Practitioner, query: AvailabilityQuery, input: ScheduleInput,
                              clock: WallClock) -> [TimeRange] {
        let leave = merged(practitioner.leave)
        let hours = (1...7).map { w in practitioner.hours.filter { $0.weekday == w && $0.start < $0.end } }
        let breaks = (1...7).map { w in practitioner.breaks.filter { $0.weekday == w && $0.start < $0.end } }
        var result: [TimeRange] = []
        var day = query.from
        while day <= query.to {
            defer { day = day.adding(days: 1) }
            let weekday = day.isoWeekday
            if hours[weekday - 1].isEmpty || input.closures.contains(day) { continue }
            var cuts = breaks[weekday - 1].map { TimeRange(clock.instant(day, $0.start), clock.instant(day, $0.end)) }
            if !leave.isEmpty {
                let whole = TimeRange(clock.instant(day, ClockTime(minutes: 0)!), clock.instant(day, ClockTime(minutes: 1440)!))
                cuts += leave.filter { $0.overlaps(whole) }
            }
            for window in hours[weekday - 1] {
                let whole = TimeRange(clock.instant(day, window.start), clock.instant(day, window.end))
                var pieces = [whole]
                for cut in cuts where cut.overlaps(whole) { pieces = pieces.flatMap { subtract(cut, from: $0) } }
                result += pieces.filter { $0.start < $0.end }
            }
        }
        return result.sorted { $0.start < $1.start }
    }

    static func subtract(_ cut: TimeRange, from piece: TimeRange) -> [TimeRange] {
        guard cut.overlaps(piece) else { return [piece] }
        var out: [TimeRange] = []
        if piece.start < cut.start { out.append(TimeRange(piece.start, cut.start)) }
        if cut.end < piece.end { out.append(TimeRange(cut.end, piece.end)) }
        return out
    }

    /// Sorted, with overlapping and touching ranges joined: what a binary search can answer over.
    static func merged(_ ranges: [TimeRange]) -> [TimeRange] {
        var out: [TimeRange] = []
        for range in ranges.sorted(by: { $0.start < $1.start }) where range.start < range.end {
            if let last = out.last, range.start <= last.end {
                out[out.count - 1].end = max(last.end, range.end)
            } else {
                out.append(range)
            }
        }
        return out
    }

    /// The held range of a merged list that overlaps `range`, if any (the first one ending after its start).
    static func firstBlocking(_ range: TimeRange, _ held: [TimeRange]) -> TimeRange? {
        var low = 0, high = held.count
        while low < high {
            let mid = (low + high) / 2
            if held[mid].end <= range.start { low = mid + 1 } else { high = mid }
        }
        return low < held.count && held[low].start < range.end ? held[low] : nil
    }

}

extension CalendarDate {
    /// ISO weekday: 1 Monday … 7 Sunday (1970-01-01 was a Thursday).
    public var isoWeekday: Int {
        ((dayNumber % 7 + 7) % 7 + 3) % 7 + 1
    }
}

/// SplitMix64: a small deterministic random generator, so a benchmark books the same chain every run and a failing
/// random test can be rerun from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
