import DermisCore
import Testing

/// The reports' arithmetic against values worked out by hand.
struct ReportMathTests {
    @Test func medianAndQuartilesOfAnOddCount() throws {
        // Changes -3, -2, -1, -1, 0: median the 3rd (-1); Q1 at (5-1)·0.25 = 1 → the 2nd (-2); Q3 at 3 → the 4th (-1).
        let summary = try #require(ReportMath.summary([-3: 1, -2: 1, -1: 2, 0: 1]))
        #expect([summary.median, summary.q1, summary.q3, summary.min, summary.max] == [-1, -2, -1, -3, 0])
        #expect(summary.n == 5 && summary.small)
    }

    @Test func medianOfAnEvenCountIsTheMeanOfTheMiddleTwo() throws {
        // 1, 2, 2, 3, 4, 5: median at 2.5 → (2 + 3) / 2; Q1 at 1.25 → 2 + 0.25·0 = 2; Q3 at 3.75 → 3 + 0.75·(4 − 3) = 3.75.
        let summary = try #require(ReportMath.summary([1: 1, 2: 2, 3: 1, 4: 1, 5: 1]))
        #expect(summary.median == 2.5)
        #expect(summary.q1 == 2)
        #expect(summary.q3 == 3.75)
        #expect(summary.n == 6)
    }

    @Test func smallGroupsAreMarkedAtTheBoundary() throws {
        #expect(try #require(ReportMath.summary([2: ReportMath.smallGroup - 1])).small)
        #expect(try !#require(ReportMath.summary([2: ReportMath.smallGroup])).small)
        #expect(ReportMath.summary([Int: Int]()) == nil)
        #expect(ReportMath.summary([3: 0]) == nil, "a value counted zero times is no data")
        let one = try #require(ReportMath.summary([4: 1]))
        #expect(one.median == 4 && one.q1 == 4 && one.q3 == 4)
    }

    @Test func ratesAndStock() {
        #expect(ReportMath.per100(2, sessions: 15) == 200.0 / 15)
        #expect(ReportMath.per100(0, sessions: 0) == nil)
        #expect(ReportMath.percent(90, of: 450) == 20)
        #expect(ReportMath.percent(1, of: 0) == nil)
        // 44 left at 10 used in 30 days → 132 days.
        #expect(ReportMath.stockDays(remaining: 44, used: 10, windowDays: 30) == 132)
        #expect(ReportMath.stockDays(remaining: 44, used: 0, windowDays: 30) == nil)
    }

    @Test func workingTimeIsHoursLessBreaksAndRoomsTheUnion() {
        // 09:00–17:00 with a 12:00–12:30 break: 450 minutes.
        let worked = ReportMath.subtract([(start: 720, end: 750)], from: [(start: 540, end: 1020)])
        #expect(ReportMath.unionMinutes(worked) == 450)
        // A break outside the hours subtracts nothing.
        #expect(ReportMath.unionMinutes(ReportMath.subtract([(start: 1080, end: 1100)], from: [(start: 540, end: 1020)])) == 480)
        // Two people 09:00–13:00 and 12:00–18:00: a room is available 09:00–18:00, 540 minutes, overlap counted once.
        #expect(ReportMath.unionMinutes([(start: 540, end: 780), (start: 720, end: 1080)]) == 540)
        #expect(ReportMath.unionMinutes([(start: 540, end: 600), (start: 600, end: 660)]) == 120)
        #expect(ReportMath.unionMinutes([]) == 0)
    }

    @Test func weeksStartOnMondayAndCoverThePeriod() throws {
        // 2026-11-30 is a Monday; Sunday 2026-11-29 belongs to the week of Monday 2026-11-23.
        let weeks = ReportMath.weekStarts(from: try #require(CalendarDate(iso: "2026-11-29")), to: try #require(CalendarDate(iso: "2026-12-07")))
        #expect(weeks.map(\.description) == ["2026-11-23", "2026-11-30", "2026-12-07"])
        #expect(ReportMath.weekStarts(from: try #require(CalendarDate(iso: "2026-12-02")), to: try #require(CalendarDate(iso: "2026-12-01"))).isEmpty)
    }

    @Test func chartsPlaceValuesOnTheirAxis() {
        let bars = BarChart([(label: "a", value: 50, text: "50 %", marked: false), (label: "b", value: 100, text: "100 %", marked: true)], scaleMax: 100)
        let plot = BarChart.width - BarChart.labelWidth - BarChart.valueWidth
        #expect(bars.bars.map(\.width) == [plot / 2, plot])
        #expect(bars.bars[1].marked)
        let intervals = IntervalChart([(label: "x", low: -2, mid: -1, high: -1, text: "", marked: false)], axis: -3...3)
        #expect(intervals.zeroX == intervals.x(0))
        #expect(intervals.rows[0].low < intervals.rows[0].mid && intervals.rows[0].mid == intervals.rows[0].high)
        #expect(intervals.ticks.count == 7)
    }
}
