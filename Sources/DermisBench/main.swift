// The availability benchmark: a 90-day search across a chain of 50 locations × 20 practitioners with realistic
// bookings, timed against the minute-by-minute baseline in the same run (machines are noisy: the ratio is the figure).
//
//     swift run -c release dermis-bench [--locations 50] [--practitioners 20] [--days 90] [--runs 3]
import DermisCore
import Foundation

struct Options {
    var locations = 50
    var practitioners = 20
    var days = 90
    var runs = 3

    init(_ arguments: [String]) {
        var i = 0
        func value() -> Int {
            i += 1
            guard i < arguments.count, let number = Int(arguments[i]), number > 0 else {
                FileHandle.standardError.write(Data("dermis-bench: \(arguments[i - 1]) needs a positive whole number\n".utf8))
                exit(2)
            }
            return number
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--locations": locations = value()
            case "--practitioners": practitioners = value()
            case "--days": days = value()
            case "--runs": runs = value()
            default:
                FileHandle.standardError.write(Data("dermis-bench: unknown option \(arguments[i]); use --locations, --practitioners, --days, --runs\n".utf8))
                exit(2)
            }
            i += 1
        }
    }
}


let zones = ["Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Australia/Sydney"].map { TimeZone(identifier: $0)! }
let firstDay = CalendarDate(iso: "2027-03-01")!  // spans the spring daylight-saving change in every zone but Sydney's

/// One location: practitioners Monday–Friday 09:00–17:30 (some Saturdays 10:00–14:00) with a lunch break, 12 rooms,
/// 12 pens, a closure, some leave, and days about 65% booked with 30–90-minute appointments (an hour or more is a
/// treatment, which takes a pen).
func location(_ index: Int, _ options: Options, _ rng: inout SplitMix64) -> ScheduleInput {
    let zone = zones[index % zones.count]
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    func instant(_ day: CalendarDate, _ minutes: Int) -> Date {
        calendar.date(from: DateComponents(year: day.year, month: day.month, day: day.day, hour: minutes / 60, minute: minutes % 60))!
    }
    let weekdays = (1...5).map { WeeklyWindow(weekday: $0, start: ClockTime(minutes: 540)!, end: ClockTime(minutes: 1050)!) }
    let practitioners = (0..<options.practitioners).map { p in
        ScheduleInput.Practitioner(
            id: "L\(index)-P\(p)",
            hours: weekdays + (p % 4 == 0 ? [WeeklyWindow(weekday: 6, start: ClockTime(minutes: 600)!, end: ClockTime(minutes: 840)!)] : []),
            breaks: (1...6).map { WeeklyWindow(weekday: $0, start: ClockTime(minutes: 750)!, end: ClockTime(minutes: 780)!) },
            leave: p % 7 == 3 ? [TimeRange(instant(firstDay.adding(days: 20 + p), 0), instant(firstDay.adding(days: 25 + p), 0))] : [],
            services: ["treatment", "consultation"])
    }
    let rooms = (0..<12).map { "L\(index)-R\($0)" }
    let pens = (0..<12).map { "L\(index)-PEN\($0)" }
    var busy: [String: [TimeRange]] = [:]
    // Book each practitioner's working days: walk the day, place an appointment in a free room (and pen for
    // treatments) or leave a gap; about 65% of the time ends up booked.
    for offset in 0..<options.days {
        let day = firstDay.adding(days: offset)
        let weekday = day.isoWeekday
        var today: [String: [TimeRange]] = [:]   // rooms and pens booked so far this day
        for practitioner in practitioners {
            guard let window = practitioner.hours.first(where: { $0.weekday == weekday }) else { continue }
            var t = window.start.minutes
            while t < window.end.minutes {
                let length = [30, 45, 60, 75, 90][Int.random(in: 0..<5, using: &rng)]
                if Int.random(in: 0..<100, using: &rng) < 65, t + length <= window.end.minutes, !(t < 780 && t + length > 750) {
                    let range = TimeRange(instant(day, t), instant(day, t + length + 15))
                    let freeRoom = rooms.first { room in !(today[room] ?? []).contains { $0.overlaps(range) } }
                    let treatment = length >= 60
                    let freePen = treatment ? pens.first { pen in !(today[pen] ?? []).contains { $0.overlaps(range) } } : nil
                    if let freeRoom, !treatment || freePen != nil {
                        busy[practitioner.id, default: []].append(range)
                        today[freeRoom, default: []].append(range)
                        if let freePen { today[freePen, default: []].append(range) }
                    }
                    t += length + 15
                } else {
                    t += 15
                }
            }
        }
        for (resource, ranges) in today { busy[resource, default: []] += ranges }
    }
    return ScheduleInput(timeZone: zone, closures: [firstDay.adding(days: 30 + index % 10)], practitioners: practitioners,
                         rooms: rooms.map { .init(id: $0) }, pens: pens.map { .init(id: $0) }, busy: busy)
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
var rng = SplitMix64(seed: 2026_11_27)
let setupStart = ContinuousClock.now
let chain = (0..<options.locations).map { location($0, options, &rng) }
let bookings = chain.reduce(0) { total, input in total + input.practitioners.reduce(0) { $0 + (input.busy[$1.id]?.count ?? 0) } }
print("Chain: \(options.locations) locations × \(options.practitioners) practitioners, 12 rooms and 12 pens each; \(bookings) bookings over \(options.days) days (built in \(ContinuousClock.now - setupStart)).")

let query = AvailabilityQuery(service: "treatment", minutes: 75, bufferMinutes: 15, needsPen: true,
                              from: firstDay, to: firstDay.adding(days: options.days - 1), gridMinutes: 15)

func measure(_ name: String, _ search: (AvailabilityQuery, ScheduleInput) -> [FreeSlot]) -> (Duration, Int, [[FreeSlot]]) {
    var times: [Duration] = []
    var results: [[FreeSlot]] = []
    for _ in 0..<options.runs {
        let start = ContinuousClock.now
        results = chain.map { search(query, $0) }
        times.append(ContinuousClock.now - start)
    }
    let median = times.sorted()[times.count / 2]
    let count = results.reduce(0) { $0 + $1.count }
    print("  \(name): median \(median) of \(options.runs) runs, \(count) free starts")
    return (median, count, results)
}

print("90-day search of a 75-minute treatment (+15 min buffer, needs a pen) on a 15-minute grid, every location:")
let (fast, _, fastSlots) = measure("interval search (Availability.search)  ", Availability.search)
let (naive, _, naiveSlots) = measure("minute-by-minute baseline (naiveSearch)", Availability.naiveSearch)
guard fastSlots == naiveSlots else {
    print("MISMATCH: the two searches disagree")
    exit(1)
}
let ratio = Double(naive.components.seconds * 1_000_000_000_000_000_000 + naive.components.attoseconds)
    / Double(fast.components.seconds * 1_000_000_000_000_000_000 + fast.components.attoseconds)
print(String(format: "Same answers. The interval search takes %.3f of the baseline's time (%.1f× faster).", 1 / ratio, ratio))
