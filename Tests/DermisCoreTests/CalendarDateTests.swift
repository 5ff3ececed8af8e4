import Testing
@testable import DermisCore

@Suite struct CalendarDateTests {
    @Test func parsesOnlyRealDatesInISOForm() {
        #expect(CalendarDate(iso: "2026-12-01")?.description == "2026-12-01")
        #expect(CalendarDate(iso: "2028-02-29") != nil)
        for bad in ["2026-02-30", "2027-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "26-01-01", "2026/01/01", "", "2026-01-01T00:00", "２０２６-01-01"] {
            #expect(CalendarDate(iso: bad) == nil, "\(bad) should not parse")
        }
    }

    @Test func addsCalendarMonths() {
        #expect(Fixture.date("2026-06-01").adding(months: 6) == Fixture.date("2026-12-01"))
        #expect(Fixture.date("2026-08-31").adding(months: 6) == Fixture.date("2027-02-28"))
        #expect(Fixture.date("2026-10-01").adding(months: 3) == Fixture.date("2027-01-01"))
    }

    @Test func addsDaysAcrossYearEnd() {
        #expect(Fixture.date("2026-12-29").adding(days: 28) == Fixture.date("2027-01-26"))
        #expect(Fixture.date("2026-12-01").days(until: Fixture.date("2026-12-29")) == 28)
    }
}
