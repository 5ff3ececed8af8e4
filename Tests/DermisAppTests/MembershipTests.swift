import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    @Suite struct MembershipSales {
        func post(_ app: Application, _ path: String, _ headers: HTTPHeaders, _ fields: [(String, String)]) async throws -> (HTTPStatus, String) {
            var result: (HTTPStatus, String) = (.ok, "")
            try await app.testing().test(.POST, path, headers: headers.merging(formHeaders), body: form(fields)) { res in
                result = (res.status, res.body.string)
            }
            return result
        }

        @Test func aMembershipIsInvoicedEachMonthItsSessionsAndDiscountAreUsedAndACancellationRunsToTheMonthsEnd() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let clinical = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                // Plans: bad values named; a plan needs included sessions or a discount.
                let bad = try await post(app, "/admin/billing/memberships", admin, [("name", "Club"), ("monthlyPrice", ""), ("includedSessions", "0"),
                                                                                    ("discount", "60")])
                #expect(bad.0 == .unprocessableEntity && bad.1.contains("data-field=\"monthlyPrice\"") && bad.1.contains("data-field=\"discount\""))
                let empty = try await post(app, "/admin/billing/memberships", admin, [("name", "Nothing"), ("monthlyPrice", "10"), ("includedSessions", "0")])
                #expect(empty.0 == .unprocessableEntity && empty.1.contains("data-field=\"includedSessions\""))
                #expect(try await post(app, "/admin/billing/memberships", admin, [("name", "Glow club"), ("monthlyPrice", "99"), ("includedSessions", "1"),
                                                                                  ("discount", "10")]).0 == .seeOther)
                let plan = try #require(try await MembershipPlan.query(on: app.db).first())
                // Joined today (Friday 27 November): the first month invoiced at once; one membership at a time.
                #expect(try await post(app, "/patients/\(zoe.id!)/memberships", desk, [("plan", plan.id!.uuidString), ("startOn", "2026-11-26")]).0
                        == .unprocessableEntity, "not in the past")
                #expect(try await post(app, "/patients/\(zoe.id!)/memberships", desk, [("plan", plan.id!.uuidString), ("startOn", "")]).0 == .seeOther)
                #expect(try await post(app, "/patients/\(zoe.id!)/memberships", desk, [("plan", plan.id!.uuidString)]).0 == .conflict)
                let membership = try #require(try await Membership.query(on: app.db).first())
                #expect(membership.periodStart == "2026-11-27" && membership.periodEnd == "2026-12-26")
                let first = try #require(try await Invoice.query(on: app.db).sort(\.$number).first())
                let firstLine = try first.decodedLines.first?.description ?? ""
                #expect(first.gross == 9900 && firstLine.contains("2026-11-27 to 2026-12-26"))
                // The discount: a consultation at 50.00 is 45.00 to a member, and says why.
                #expect(try await post(app, "/patients/\(zoe.id!)/invoices", desk, [("service[]", "consultation"), ("quantity[]", "1")]).0 == .seeOther)
                let consultation = try #require(try await Invoice.query(on: app.db).sort(\.$number, .descending).first())
                let consultationLine = try consultation.decodedLines[0].description
                #expect(consultation.gross == 4500 && consultationLine == "Consultation (member price, 10 % off)")
                // A signed chart uses the session included this month (before any package).
                let course = Course(app: app, session: clinical, patientID: zoe.id!)
                try await course.ready()
                let chart = try await signedChart(app, course, settings)
                #expect(try await MembershipUse.query(on: app.db).filter(\.$chartID == chart.chartID).count() == 1)
                var page = ""
                try await app.testing().test(.GET, "/patients/\(zoe.id!)/invoices/new", headers: desk) { page = $0.body.string }
                #expect(page.contains("0 of 1 this month") && page.contains("renews on 2026-12-27"))
                // Renewal as each month begins: not the day before, once on the day, and never twice.
                let store = DermisApp.Memberships(db: app.db, clinicID: zoe.$clinic.id, now: settings.clock.now())
                #expect(try await store.renewDue(today: CalendarDate(iso: "2026-12-26")!) == 0)
                #expect(try await store.renewDue(today: CalendarDate(iso: "2026-12-27")!) == 1)
                #expect(try await store.renewDue(today: CalendarDate(iso: "2026-12-27")!) == 0)
                let renewed = try #require(try await Membership.find(membership.id, on: app.db))
                #expect(renewed.periodStart == "2026-12-27" && renewed.periodEnd == "2027-01-26" && renewed.periods == 2)
                let second = try #require(try await Invoice.query(on: app.db).sort(\.$number, .descending).first())
                let secondLine = try second.decodedLines[0].description
                #expect(second.gross == 9900 && secondLine.contains("2026-12-27 to 2027-01-26"))
                // Cancelled: it runs to the end of the month paid for, then ends, invoicing nothing more.
                #expect(try await post(app, "/memberships/\(membership.id!)/cancel", desk, []).0 == .seeOther)
                #expect(try await post(app, "/memberships/\(membership.id!)/cancel", desk, []).0 == .conflict)
                #expect(try await Membership.find(membership.id, on: app.db)?.endsOn == "2027-01-26")
                let invoices = try await Invoice.query(on: app.db).count()
                #expect(try await store.renewDue(today: CalendarDate(iso: "2027-01-26")!) == 0)
                #expect(try await Membership.find(membership.id, on: app.db)?.status == "active", "still running on its last day")
                #expect(try await store.renewDue(today: CalendarDate(iso: "2027-01-27")!) == 0)
                #expect(try await Membership.find(membership.id, on: app.db)?.status == "ended")
                #expect(try await Invoice.query(on: app.db).count() == invoices)
                // A server down for months catches up month by month: a new member, three months on.
                #expect(try await post(app, "/patients/\(zoe.id!)/memberships", desk, [("plan", plan.id!.uuidString)]).0 == .seeOther)
                #expect(try await store.renewDue(today: CalendarDate(iso: "2027-02-27")!) == 3)
            }
        }

        @Test func monthlyPeriodsFromTheLastDaysOfAMonthStayContiguous() {
            let first = CalendarDate(iso: "2027-01-31")!
            #expect(MembershipPeriod.end(first, period: 0).description == "2027-02-27")
            #expect(MembershipPeriod.start(first, period: 1).description == "2027-02-28")
            #expect(MembershipPeriod.end(first, period: 1).description == "2027-03-30")
            #expect(MembershipPeriod.start(first, period: 2).description == "2027-03-31")
            let leap = CalendarDate(iso: "2028-01-30")!
            #expect(MembershipPeriod.start(leap, period: 1).description == "2028-02-29")
        }
    }
}
