import Foundation
import Testing
@testable import DermisCore

/// Availability: hours, breaks, leave, closures, buffers, every resource free, daylight-saving days, and the fast
/// search checked against the minute-by-minute baseline on random clinics.
@Suite struct SchedulingTests {
    let london = TimeZone(identifier: "Europe/London")!

    func time(_ text: String) -> ClockTime { ClockTime(text)! }
    func day(_ text: String) -> CalendarDate { CalendarDate(iso: text)! }

    /// An instant from a wall-clock time in London.
    func at(_ date: String, _ clock: String, zone: TimeZone? = nil) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone ?? london
        let d = day(date), t = time(clock)
        return calendar.date(from: DateComponents(year: d.year, month: d.month, day: d.day, hour: t.minutes / 60, minute: t.minutes % 60))!
    }

    func wall(_ instant: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = london
        let c = calendar.dateComponents([.hour, .minute], from: instant)
        return String(format: "%02d:%02d", c.hour!, c.minute!)
    }

    func practitioner(_ id: String = "p1", weekdays: [Int] = [1, 2, 3, 4, 5], from: String = "09:00", to: String = "12:00",
                      breaks: [(String, String)] = [], leave: [TimeRange] = []) -> ScheduleInput.Practitioner {
        ScheduleInput.Practitioner(
            id: id, hours: weekdays.map { WeeklyWindow(weekday: $0, start: time(from), end: time(to)) },
            breaks: weekdays.flatMap { w in breaks.map { WeeklyWindow(weekday: w, start: time($0.0), end: time($0.1)) } },
            leave: leave, services: ["consultation", "treatment"])
    }

    func query(_ from: String, _ to: String? = nil, minutes: Int = 60, buffer: Int = 0, pen: Bool = false, grid: Int = 30) -> AvailabilityQuery {
        AvailabilityQuery(service: pen ? "treatment" : "consultation", minutes: minutes, bufferMinutes: buffer, needsPen: pen,
                          from: day(from), to: day(to ?? from), gridMinutes: grid)
    }

    @Test func aTreatmentBooksTheEnginesAppointmentTime() throws {
        let request = Fixture.request([("cheeks", "acne-scars"), ("forehead", "fine-lines"), ("chin", "texture")])
        let plan = try Fixture.plan(request)
        #expect(try Planning.appointmentMinutes(zones: ["cheeks", "forehead", "chin"], protocol: Fixture.protocolData) == plan.appointmentMinutes)
        #expect(invalidIssues { _ = try Planning.appointmentMinutes(zones: ["cheeks", "elbow"], protocol: Fixture.protocolData) }.map(\.path) == ["zones[1]"])
        #expect(invalidIssues { _ = try Planning.appointmentMinutes(zones: [], protocol: Fixture.protocolData) }.map(\.path) == ["zones"])
    }

    @Test func theWeekdayIsISO() {
        #expect(day("2026-11-27").isoWeekday == 5)
        #expect(day("2026-11-29").isoWeekday == 7)
        #expect(day("2026-11-30").isoWeekday == 1)
    }

    @Test func startsKeepToHoursBreaksAndTheGrid() {
        let input = ScheduleInput(timeZone: london, practitioners: [practitioner(breaks: [("10:00", "10:30")])], rooms: [.init(id: "r1")])
        let starts = Availability.search(query("2026-11-30"), in: input).map { wall($0.start) }
        #expect(starts == ["09:00", "10:30", "11:00"])
    }

    @Test func everyResourceMustBeFreeAndBackToBackIsAllowed() {
        let monday = "2026-11-30"
        var input = ScheduleInput(timeZone: london, practitioners: [practitioner()], rooms: [.init(id: "r1")], pens: [.init(id: "pen1")])
        input.busy = ["r1": [TimeRange(at(monday, "09:00"), at(monday, "10:00"))], "pen1": [TimeRange(at(monday, "10:00"), at(monday, "11:00"))]]
        #expect(Availability.search(query(monday), in: input).map { wall($0.start) } == ["10:00", "10:30", "11:00"])
        #expect(Availability.search(query(monday, pen: true), in: input).map { wall($0.start) } == ["11:00"], "back to back with the pen's booking")
        input.rooms.append(.init(id: "r2"))
        let slots = Availability.search(query(monday), in: input)
        #expect(slots.first.map { (wall($0.start), $0.roomID) } ?? ("", "") == ("09:00", "r2"))
        input.busy["p1"] = [TimeRange(at(monday, "09:30"), at(monday, "11:30"))]
        #expect(Availability.search(query(monday), in: input).isEmpty)
    }

    @Test func aBufferIsHeldAfterTheAppointment() {
        let monday = "2026-11-30"
        var input = ScheduleInput(timeZone: london, practitioners: [practitioner()], rooms: [.init(id: "r1")])
        input.busy = ["p1": [TimeRange(at(monday, "10:30"), at(monday, "11:00"))]]
        #expect(Availability.search(query(monday, minutes: 30, buffer: 0), in: input).map { wall($0.start) } == ["09:00", "09:30", "10:00", "11:00", "11:30"])
        #expect(Availability.search(query(monday, minutes: 30, buffer: 15), in: input).map { wall($0.start) } == ["09:00", "09:30", "11:00", "11:30"],
                "10:00 + 30 min + 15 min buffer would run into the 10:30 booking")
    }

    @Test func closuresLeaveAndNotBeforeRemoveStarts() {
        let input = ScheduleInput(timeZone: london, closures: [day("2026-12-01")],
                                  practitioners: [practitioner(leave: [TimeRange(at("2026-12-02", "00:00"), at("2026-12-02", "10:30"))])],
                                  rooms: [.init(id: "r1")])
        var q = query("2026-11-30", "2026-12-02")
        q.notBefore = at("2026-11-30", "10:10")
        let slots = Availability.search(q, in: input).map { "\(CalendarDate($0.start, in: london)) \(wall($0.start))" }
        #expect(slots == ["2026-11-30 10:30", "2026-11-30 11:00", "2026-12-02 10:30", "2026-12-02 11:00"])
    }

    @Test func onTheSpringForwardDayWallClockHoursHoldAndTheLostHourIsGone() {
        // 2027-03-28: London moves from 01:00 GMT to 02:00 BST.
        let hours = [WeeklyWindow(weekday: 6, start: time("00:00"), end: time("04:00")), WeeklyWindow(weekday: 6, start: time("09:00"), end: time("17:00")),
                     WeeklyWindow(weekday: 7, start: time("00:00"), end: time("04:00")), WeeklyWindow(weekday: 7, start: time("09:00"), end: time("17:00"))]
        let input = ScheduleInput(timeZone: london, practitioners: [.init(id: "p1", hours: hours, services: ["consultation"])], rooms: [.init(id: "r1")])
        let saturday = Availability.search(query("2027-03-27", grid: 15), in: input)
        let sunday = Availability.search(query("2027-03-28", grid: 15), in: input)
        func day(_ slots: [FreeSlot]) -> [FreeSlot] { slots.filter { wall($0.start) >= "09:00" } }
        func night(_ slots: [FreeSlot]) -> [FreeSlot] { slots.filter { wall($0.start) < "09:00" } }
        #expect(day(saturday).map { wall($0.start) } == day(sunday).map { wall($0.start) }, "09:00–17:00 on the wall clock both days")
        #expect(day(sunday).first?.start == at("2027-03-28", "09:00") && at("2027-03-28", "09:00").timeIntervalSince1970.truncatingRemainder(dividingBy: 3600) == 0)
        #expect(day(saturday).count == 29)
        #expect(night(saturday).count == 13 && night(sunday).count == 9, "00:00–04:00 is only three real hours that night")
        #expect(night(sunday).allSatisfy { $0.end.timeIntervalSince($0.start) == 3600 })
        #expect(!night(sunday).map { wall($0.start) }.contains("01:30"), "01:30 does not exist that night")
    }

    @Test func onTheFallBackDayTheRepeatedHourGivesRealExtraStarts() {
        // 2027-10-31: London moves from 02:00 BST back to 01:00 GMT.
        let hours = [WeeklyWindow(weekday: 7, start: time("00:00"), end: time("04:00")), WeeklyWindow(weekday: 7, start: time("09:00"), end: time("17:00"))]
        let input = ScheduleInput(timeZone: london, practitioners: [.init(id: "p1", hours: hours, services: ["consultation"])], rooms: [.init(id: "r1")])
        let slots = Availability.search(query("2027-10-31", grid: 15), in: input)
        let night = slots.filter { $0.start < at("2027-10-31", "09:00") }
        #expect(night.count == 17, "five real hours: 00:00–04:00 with 01:00–02:00 twice")
        #expect(Set(night.map(\.start)).count == night.count)
        #expect(slots.filter { $0.start >= at("2027-10-31", "09:00") }.first.map { wall($0.start) } == "09:00")
    }

    @Test func theFirstFreeSlotFromADayIsForSeriesBooking() {
        var input = ScheduleInput(timeZone: london, practitioners: [practitioner(weekdays: [3])], rooms: [.init(id: "r1")])
        input.busy = ["r1": [TimeRange(at("2026-12-02", "09:00"), at("2026-12-02", "12:00"))]]
        let slot = Availability.firstFree(query("2026-11-30"), on: day("2026-11-30"), horizonDays: 14, in: input)
        #expect(slot?.start == at("2026-12-09", "09:00"), "the Wednesday after, since the first is full")
        #expect(Availability.firstFree(query("2026-11-30"), on: day("2026-11-30"), horizonDays: 1, in: input) == nil)
    }

    /// A small random clinic: random hours, breaks, bookings and blocks; the fast search must equal the baseline.
    @Test(arguments: 0..<40)
    func theSearchAgreesWithTheMinuteByMinuteBaseline(seed: UInt64) {
        var rng = SplitMix64(seed: seed &+ 1)
        let zone = [london, TimeZone(identifier: "America/New_York")!, TimeZone(identifier: "Australia/Sydney")!][Int(seed % 3)]
        let start = [day("2027-03-24"), day("2027-10-27"), day("2026-11-30")][Int(seed / 3 % 3)]
        func clock(_ minutes: Int) -> ClockTime { ClockTime(minutes: minutes)! }
        let practitioners = (0..<3).map { i in
            ScheduleInput.Practitioner(
                id: "p\(i)",
                hours: (1...7).filter { _ in Int.random(in: 0..<4, using: &rng) > 0 }.map { w in
                    let open = Int.random(in: 0..<20, using: &rng) * 30
                    return WeeklyWindow(weekday: w, start: clock(open), end: clock(min(1440, open + Int.random(in: 4...16, using: &rng) * 30)))
                },
                breaks: (1...7).map { w in WeeklyWindow(weekday: w, start: clock(720), end: clock(720 + Int.random(in: 0...2, using: &rng) * 15)) },
                services: i == 2 ? ["consultation"] : ["consultation", "treatment"])
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let origin = calendar.date(from: DateComponents(year: start.year, month: start.month, day: start.day))!
        func bookings(_ count: Int) -> [TimeRange] {
            (0..<count).map { _ in
                let s = origin.addingTimeInterval(Double(Int.random(in: 0..<(7 * 96), using: &rng) * 15 * 60))
                return TimeRange(s, s.addingTimeInterval(Double(Int.random(in: 1...6, using: &rng) * 15 * 60)))
            }
        }
        var busy: [String: [TimeRange]] = [:]
        for id in ["p0", "p1", "p2", "r0", "r1", "pen0"] { busy[id] = bookings(Int.random(in: 0...25, using: &rng)) }
        let input = ScheduleInput(timeZone: zone, closures: [start.adding(days: Int.random(in: 0..<7, using: &rng))], practitioners: practitioners,
                                  rooms: [.init(id: "r0"), .init(id: "r1", blocked: bookings(3))], pens: [.init(id: "pen0")], busy: busy)
        for pen in [false, true] {
            var q = AvailabilityQuery(service: pen ? "treatment" : "consultation", minutes: [30, 45, 60, 75][Int.random(in: 0..<4, using: &rng)],
                                      bufferMinutes: [0, 10, 15][Int.random(in: 0..<3, using: &rng)], needsPen: pen,
                                      from: start, to: start.adding(days: 6), gridMinutes: [5, 15, 30][Int.random(in: 0..<3, using: &rng)])
            if Bool.random(using: &rng) { q.notBefore = origin.addingTimeInterval(Double(Int.random(in: 0..<5000, using: &rng) * 60)) }
            let fast = Availability.search(q, in: input)
            #expect(fast == Availability.naiveSearch(q, in: input), "seed \(seed), pen \(pen)")
            #expect(fast.allSatisfy { slot in Availability.firstBlocking(TimeRange(slot.start, slot.end), Availability.merged(busy[slot.practitionerID] ?? [])) == nil })
        }
    }
}


extension SchedulingTests {
    /// Day arithmetic without a Calendar agrees with Foundation's over four centuries of days, leap rules included.
    @Test func dayArithmeticMatchesTheGregorianCalendar() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let start = CalendarDate(iso: "1899-12-25")!
        var date = calendar.date(from: DateComponents(year: 1899, month: 12, day: 25))!
        for offset in stride(from: 0, to: 146_097 + 400, by: 7) {
            let c = calendar.dateComponents([.year, .month, .day, .weekday], from: date)
            let computed = start.adding(days: offset)
            #expect(computed == CalendarDate(year: c.year!, month: c.month!, day: c.day!), "offset \(offset)")
            #expect(computed.isoWeekday == (c.weekday! + 5) % 7 + 1)
            #expect(start.days(until: computed) == offset)
            date = calendar.date(byAdding: .day, value: 7, to: date)!
        }
        #expect(CalendarDate(iso: "2028-02-28")!.adding(days: 1).description == "2028-02-29")
        #expect(CalendarDate(iso: "2100-02-28")!.adding(days: 1).description == "2100-03-01")
        #expect(CalendarDate(iso: "2026-01-01")!.adding(days: -1).description == "2025-12-31")
    }
}

/// The .ics of a booking: RFC 5545 shape, the location's zone with its changes, escaping and folding.
@Suite struct CalendarInviteTests {
    let london = TimeZone(identifier: "Europe/London")!

    func invite(start: Date, zone: TimeZone, description: String = "Microneedling: cheeks, forehead") -> CalendarInvite {
        CalendarInvite(uid: "a1b2@dermis", start: start, end: start.addingTimeInterval(75 * 60), summary: "Microneedling treatment",
                       location: "Harbourside, 1 Quay Street; London", description: description, timeZone: zone,
                       stamp: Date(timeIntervalSince1970: 1_795_773_600))
    }

    @Test func anEventCarriesItsZoneAndLocalTimes() {
        // 2027-04-01 09:00 BST is 08:00 UTC.
        let text = invite(start: Date(timeIntervalSince1970: 1_806_566_400), zone: london).ics
        let lines = text.components(separatedBy: "\r\n")
        #expect(text.hasSuffix("\r\n") && !text.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        #expect(lines.first == "BEGIN:VCALENDAR" && lines.contains("VERSION:2.0"))
        #expect(lines.contains("DTSTART;TZID=Europe/London:20270401T090000"))
        #expect(lines.contains("DTEND;TZID=Europe/London:20270401T101500"))
        #expect(lines.contains("DTSTAMP:20261127T100000Z"))
        #expect(lines.contains("BEGIN:VTIMEZONE") && lines.contains("TZID:Europe/London"))
        // The spring change of 2027: 01:00 GMT becomes 02:00 BST.
        #expect(text.contains("BEGIN:DAYLIGHT\r\nDTSTART:20270328T010000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0100"))
        #expect(text.contains("BEGIN:STANDARD\r\nDTSTART:20261025T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0000"))
        #expect(lines.contains("LOCATION:Harbourside\\, 1 Quay Street\\; London"))
    }

    @Test func aZoneWithoutChangesHasOneStandardPart() {
        let text = invite(start: Date(timeIntervalSince1970: 1_806_566_400), zone: TimeZone(identifier: "Asia/Tokyo")!).ics
        #expect(text.contains("BEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0900\r\nTZOFFSETTO:+0900\r\nEND:STANDARD"))
        #expect(!text.contains("DAYLIGHT"))
    }

    @Test func longLinesFoldWithoutSplittingCharacters() {
        let long = String(repeating: "Zoë Lefèvre — aftercare 🌞 ", count: 8)
        let text = invite(start: Date(timeIntervalSince1970: 1_806_566_400), zone: london, description: long).ics
        for line in text.components(separatedBy: "\r\n") { #expect(line.utf8.count <= 75) }
        let unfolded = text.replacingOccurrences(of: "\r\n ", with: "")
        #expect(unfolded.contains("DESCRIPTION:" + CalendarInvite.escape(long)))
    }
}
