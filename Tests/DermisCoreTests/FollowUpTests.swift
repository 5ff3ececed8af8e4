import Foundation
import Testing
@testable import DermisCore

/// Aftercare laid on the clock from the session's end, check-in flags at their boundaries, outcome charts.
@Suite struct FollowUpTests {
    let p = Fixture.protocolData
    let london = TimeZone(identifier: "Europe/London")!
    /// 2026-11-27 15:00 in London (UTC in winter).
    let sessionEnd = Date(timeIntervalSince1970: 1_795_791_600)

    func hours(_ h: Double) -> Date { sessionEnd.addingTimeInterval(h * 3600) }

    @Test(arguments: [
        (0.25, 2, 3), (0.5, 2, 3), (0.75, 4, 5), (1.5, 4, 5), (1.75, 6, 7), (2.5, 6, 7),
    ])
    func theDeepestDepthSetsTheDowntimeAndTheRednessEnd(depth: Double, minDays: Int, maxDays: Int) {
        let schedule = AftercareSchedule.issue(sessionEnd: sessionEnd, deepestDepthMm: depth, protocol: p)
        #expect(schedule.downtime.min == minDays && schedule.downtime.max == maxDays)
        #expect(schedule.rednessExpectedUntil == hours(Double(maxDays * 24)))
        let redness = schedule.items.first { $0.id == "expected-redness" }
        #expect(redness?.ends == hours(Double(maxDays * 24)))
        #expect(redness?.instruction.contains("\(minDays)–\(maxDays) days") == true)
    }

    @Test func eachInstructionHasAbsoluteTimesFromTheSessionEnd() throws {
        let schedule = AftercareSchedule.issue(sessionEnd: sessionEnd, deepestDepthMm: 1.0, protocol: p)
        func item(_ id: String) throws -> AftercareSchedule.Item { try #require(schedule.items.first { $0.id == id }) }
        #expect(try item("nothing-on-skin").ends == hours(8))
        #expect(try item("no-makeup").ends == hours(24))
        #expect(try item("no-exercise").ends == hours(72))
        #expect(try item("no-actives").ends == hours(144))
        #expect(try item("sun-protection").starts == hours(24))
        #expect(try item("sun-protection").ends == hours(24 + 14 * 24))
        #expect(try item("resume-routine").ends == nil)
        #expect(schedule.items.allSatisfy { !$0.source.isEmpty })
    }

    @Test func todayIsTheCalendarDayInTheClinicsZone() {
        let schedule = AftercareSchedule.issue(sessionEnd: sessionEnd, deepestDepthMm: 1.0, protocol: p)
        #expect(schedule.day(of: hours(8.9), in: london) == 1)   // 23:54 the same evening
        #expect(schedule.day(of: hours(9.1), in: london) == 2)   // 00:06 the next morning
        let dayTwo = schedule.items(onDayOf: hours(18), in: london).map(\.id)
        #expect(!dayTwo.contains("nothing-on-skin"))
        #expect(dayTwo.contains("no-makeup") && dayTwo.contains("sun-protection"))
        let daySeven = schedule.items(onDayOf: hours(6 * 24), in: london).map(\.id)
        #expect(daySeven.contains("resume-routine") && daySeven.contains("no-actives"))
        #expect(!schedule.items(onDayOf: hours(8 * 24), in: london).map(\.id).contains("no-actives"))
    }

    @Test func aDaylightSavingDayIsTwentyFiveHoursAndNoInstructionMoves() {
        // 2027-03-28 01:00 UTC London springs forward; a session the evening before.
        let evening = Date(timeIntervalSince1970: 1_806_177_600) // 2027-03-27 20:00 UTC
        let schedule = AftercareSchedule.issue(sessionEnd: evening, deepestDepthMm: 0.5, protocol: p)
        let (start, end) = AftercareSchedule.bounds(of: CalendarDate(year: 2027, month: 3, day: 28)!, in: london)
        #expect(end.timeIntervalSince(start) == 23 * 3600)
        #expect(schedule.items.first { $0.id == "no-makeup" }?.ends == evening.addingTimeInterval(24 * 3600))
    }

    // MARK: Check-in flags

    func flags(_ report: CheckInReport, at: Date, depth: Double = 1.0, previous: [(pain: Int, at: Date)] = []) -> [String] {
        let schedule = AftercareSchedule.issue(sessionEnd: sessionEnd, deepestDepthMm: depth, protocol: p)
        return CheckInRules.flags(for: report, at: at, schedule: schedule, previous: previous, zone: london, protocol: p).map(\.rule)
    }

    @Test(arguments: [(0.5, 3), (1.0, 5), (2.0, 7)])
    func rednessIsFlaggedFromTheMomentTheExpectedDowntimeEnds(depth: Double, maxDays: Int) {
        let end = hours(Double(maxDays * 24))
        #expect(flags(CheckInReport(redness: 2, pain: 1), at: end.addingTimeInterval(-60), depth: depth).isEmpty)
        #expect(flags(CheckInReport(redness: 2, pain: 1), at: end, depth: depth) == ["redness-beyond-downtime"])
        #expect(flags(CheckInReport(redness: 0, pain: 1), at: end.addingTimeInterval(86_400), depth: depth).isEmpty)
    }

    @Test func anyInfectionSignIsFlaggedAtOnceWithItsWords() throws {
        let schedule = AftercareSchedule.issue(sessionEnd: sessionEnd, deepestDepthMm: 1.0, protocol: p)
        let found = CheckInRules.flags(for: CheckInReport(redness: 1, pain: 2, infectionSigns: ["pus"]), at: hours(20),
                                       schedule: schedule, previous: [], zone: london, protocol: p)
        let flag = try #require(found.first)
        #expect(found.count == 1 && flag.rule == "infection-sign" && flag.severity == "severe" && flag.eventType == "infection")
        #expect(flag.message.contains("pus") && flag.message.contains("day 2") && !flag.source.isEmpty)
    }

    @Test func painRisingCountsOnlyAfterDayTwo() {
        // Day 2 ends at midnight 33 hours after a 15:00 session.
        let dayOne = (pain: 3, at: hours(2))
        #expect(flags(CheckInReport(redness: 1, pain: 5), at: hours(32), previous: [dayOne]).isEmpty)          // day 2
        #expect(flags(CheckInReport(redness: 1, pain: 5), at: hours(34), previous: [dayOne]) == ["pain-rising"]) // day 3
        #expect(flags(CheckInReport(redness: 1, pain: 3), at: hours(34), previous: [dayOne]).isEmpty)          // not rising
        #expect(flags(CheckInReport(redness: 1, pain: 5), at: hours(34)).isEmpty)                             // nothing before
        // Compared with the latest earlier report, not the first.
        #expect(flags(CheckInReport(redness: 1, pain: 5), at: hours(50), previous: [dayOne, (pain: 6, at: hours(40))]).isEmpty)
    }

    @Test func aReportOutsideItsScalesIsRefusedByField() {
        let issues = CheckInReport(redness: 4, pain: 11, infectionSigns: ["rash"], notes: String(repeating: "x", count: 2001)).issues(protocol: p)
        #expect(issues.map(\.path) == ["redness", "pain", "infectionSigns[0]", "notes"])
        #expect(CheckInReport(redness: 3, pain: 10, infectionSigns: ["fever"]).issues(protocol: p).isEmpty)
    }

    // MARK: Outcome scales

    @Test func theScalesOfTheProtocolAreData() throws {
        for id in ["goodman-baron", "glogau", "fitzpatrick-wrinkle", "gais", "pain", "erythema"] {
            let scale = try #require(p.outcomeScale(id))
            #expect(!scale.source.isEmpty && !scale.levels.isEmpty)
        }
        #expect(p.outcomeScale("gais")?.raters == ["practitioner", "patient"])
        #expect(p.outcomeScale("pain")?.coding?.code == "72514-3")
    }

    @Test func invitationDaysMustFallWhileTheLinkWorks() throws {
        let data = try Fixture.protocolJSON { object in
            var followUp = object["followUp"] as! [String: Any]
            var invitations = followUp["invitations"] as! [String: Any]
            let valid = followUp["linkValidDays"] as! Int
            invitations["checkInDays"] = [0, 3, 3, valid]
            invitations["localHour"] = 24
            invitations["rateResultDay"] = valid
            followUp["invitations"] = invitations
            object["followUp"] = followUp
        }
        let paths = invalidIssues { _ = try ClinicalProtocol.load(from: data) }.map(\.path)
        #expect(paths.contains("followUp.invitations.checkInDays[0]") && paths.contains("followUp.invitations.checkInDays[3]"))
        #expect(!paths.contains("followUp.invitations.checkInDays[1]") && paths.contains("followUp.invitations.checkInDays"))
        #expect(paths.contains("followUp.invitations.localHour") && paths.contains("followUp.invitations.rateResultDay"))
        // The day before the link ends is allowed.
        let last = try Fixture.protocolJSON { object in
            var followUp = object["followUp"] as! [String: Any]
            var invitations = followUp["invitations"] as! [String: Any]
            invitations["rateResultDay"] = (followUp["linkValidDays"] as! Int) - 1
            followUp["invitations"] = invitations
            object["followUp"] = followUp
        }
        #expect(try ClinicalProtocol.load(from: last).followUp.invitations?.rateResultDay == 27)
    }

    @Test func anOverrideWithABrokenScaleOrFlagIsNamed() throws {
        let data = try Fixture.protocolJSON { object in
            var scales = object["outcomeScales"] as! [[String: Any]]
            scales[0]["max"] = 0
            scales[1]["raters"] = ["nurse"]
            object["outcomeScales"] = scales
            var followUp = object["followUp"] as! [String: Any]
            var flags = followUp["flags"] as! [[String: Any]]
            flags[0]["kind"] = "moon-phase"
            followUp["flags"] = flags
            followUp["painScale"] = "agony"
            object["followUp"] = followUp
        }
        let paths = invalidIssues { _ = try ClinicalProtocol.load(from: data) }.map(\.path)
        #expect(paths.contains("outcomeScales[0].max"))
        #expect(paths.contains("outcomeScales[1].raters[0]"))
        #expect(paths.contains("followUp.flags[0].kind"))
        #expect(paths.contains("followUp.painScale"))
    }

    @Test func aChartPlacesBetterScoresByTheScaleAndSessionsInOrder() throws {
        let scale = try #require(p.outcomeScale("goodman-baron"))
        let chart = OutcomeChart(scale: scale, sessions: 3, scores: [(0, 4, "practitioner"), (1, 3, "practitioner"), (2, 2, "practitioner")])
        #expect(chart.sessionX == chart.sessionX.sorted() && chart.sessionX.count == 3)
        let ys = chart.points.sorted { $0.session < $1.session }.map(\.y)
        #expect(ys[0] < ys[1] && ys[1] < ys[2])               // grade 4 is drawn highest
        #expect(chart.ticks.map(\.value) == [1, 2, 3, 4])
        #expect(chart.polyline(for: "practitioner").split(separator: " ").count == 3)
        #expect(chart.polyline(for: "patient").isEmpty)
        let pain = OutcomeChart(scale: try #require(p.outcomeScale("pain")), sessions: 1, scores: [])
        #expect(pain.ticks.map(\.value) == [0, 2, 4, 6, 8, 10])
    }
}
