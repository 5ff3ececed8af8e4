import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// Zoë, ready, treated on cheeks (acne scars) and forehead (fine lines): her chart signed. Returns the chart.
func signedChart(_ app: Application, _ course: Course, _ settings: DermisSettings) async throws -> TreatmentSession {
    let (status, chart, text) = try await course.start()
    #expect(status == .created, "\(text)")
    let chartID = chart["chartID"] as! String
    let (_, numbed, _) = try await course.call(.POST, "/sessions/\(chartID)/numbing", ifMatch: chart["version"] as? Int)
    settings.manualClock.advance(by: 30 * 60)
    let pen = try await Device.query(on: app.db).first()!.id!.uuidString
    let lot = try await CartridgeLot.query(on: app.db).filter(\.$lotNumber == "DEMO-LOT-A").first()!.id!.uuidString
    let body: [String: Any] = [
        "identityConfirmed": true, "skinCleansed": true, "deviceID": pen, "lotID": lot,
        "zones": [["zone": "cheeks", "depthMm": 1.0, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20],
                  ["zone": "forehead", "depthMm": 0.5, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12]],
        "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": false, "notes": ""]
    let (_, saved, _) = try await course.call(.PUT, "/sessions/\(chartID)", body, ifMatch: numbed["version"] as? Int)
    let (signed, _, signText) = try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: saved["version"] as? Int)
    #expect(signed == .ok, "\(signText)")
    return try #require(try await TreatmentSession.query(on: app.db).filter(\.$chartID == UUID(uuidString: chartID)!)
        .filter(\.$status == "signed").first())
}

extension AppTests {
    @Suite struct PackageSales {
        func post(_ app: Application, _ path: String, _ headers: HTTPHeaders, _ fields: [(String, String)]) async throws -> (HTTPStatus, String, String?) {
            var result: (HTTPStatus, String, String?) = (.ok, "", nil)
            try await app.testing().test(.POST, path, headers: headers.merging(formHeaders), body: form(fields)) { res in
                result = (res.status, res.body.string, res.headers.first(name: .location))
            }
            return result
        }

        func page(_ app: Application, _ path: String, _ headers: HTTPHeaders) async throws -> String {
            var text = ""
            try await app.testing().test(.GET, path, headers: headers) { text = $0.body.string }
            return text
        }

        @Test func aPackageIsSoldUsedBySignedChartsShownWithWhatIsLeftAndItsUnusedSessionsRefundedProRata() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let practitioner = try await makeStaff(app, role: .practitioner)
                let clinical = try await signIn(app, practitioner, clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let course = Course(app: app, session: clinical, patientID: zoe.id!)
                // The admin's offers: bad values named, nothing stored.
                let bad = try await post(app, "/admin/billing/packages", admin, [("name", ""), ("service", "consultation"), ("indication", "freckles"),
                                                                                 ("sessions", "0"), ("price", "1.234"), ("validityDays", "0")])
                #expect(bad.0 == .unprocessableEntity)
                for field in ["name", "service", "indication", "sessions", "price", "validityDays"] { #expect(bad.1.contains("data-field=\"\(field)\""), "\(field)") }
                #expect(bad.1.contains("value=\"1.234\""), "what was typed is shown again")
                #expect(try await PackageOffer.query(on: app.db).count() == 0)
                #expect(try await post(app, "/admin/billing/packages", admin, [("name", "Acne scar course"), ("service", "treatment"),
                    ("indication", "acne-scars"), ("sessions", "3"), ("price", "600"), ("validityDays", "180")]).0 == .seeOther)
                #expect(try await post(app, "/admin/billing/packages", admin, [("name", "Melasma course"), ("service", "treatment"),
                    ("indication", "melasma"), ("sessions", "4"), ("price", "700"), ("validityDays", "30")]).0 == .seeOther)
                let acne = try #require(try await PackageOffer.query(on: app.db).filter(\.$name == "Acne scar course").first())
                let melasma = try #require(try await PackageOffer.query(on: app.db).filter(\.$name == "Melasma course").first())
                // Sold at the desk: each an invoice. Sizing to a plan needs a plan.
                #expect(try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", acne.id!.uuidString), ("fitPlan", "on")]).0
                        == .unprocessableEntity, "no plan yet")
                #expect(try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", UUID().uuidString)]).0 == .unprocessableEntity)
                let sold = try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", acne.id!.uuidString)])
                #expect(sold.0 == .seeOther && sold.2?.hasPrefix("/invoices/") == true)
                #expect(try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", melasma.id!.uuidString)]).0 == .seeOther)
                let packages = try await PatientPackage.query(on: app.db).sort(\.$soldAt).sort(\.$price).all()
                let acnePackage = try #require(packages.first { $0.name == "Acne scar course" })
                let invoice = try #require(try await Invoice.find(acnePackage.invoiceID, on: app.db))
                #expect(invoice.gross == 60000 && invoice.patientID == zoe.id && acnePackage.expiresOn == "2027-05-26")
                // Sized to the plan's series, priced pro rata.
                try await course.ready()
                settings.manualClock.advance(by: 60)   // sold a minute later: the first acne package is used first
                let plan = try #require(try await TreatmentPlanRecord.query(on: app.db).sort(\.$version, .descending).first()?.plan)
                #expect(try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", acne.id!.uuidString), ("fitPlan", "on")]).0 == .seeOther)
                let fitted = try #require(try await PatientPackage.query(on: app.db).filter(\.$sessions == plan.series.sessions).sort(\.$soldAt, .descending).first())
                #expect(fitted.price == MoneyMath.divide(60000 * Int64(plan.series.sessions), by: 3))
                // A signed chart of acne scars uses one session of the acne package that expires first (not the melasma one).
                let chart = try await signedChart(app, course, settings)
                let redemption = try #require(try await PackageRedemption.query(on: app.db).filter(\.$chartID == chart.chartID).first())
                #expect(redemption.$package.id == acnePackage.id && redemption.practitionerID == practitioner.id)
                #expect(try await PackageRedemption.query(on: app.db).count() == 1, "one chart, one session")
                let patientPage = try await page(app, "/patients/\(zoe.id!)", desk)
                #expect(patientPage.contains("Acne scar course: <strong>2 of 3</strong> sessions left, until 2027-05-26"))
                #expect(try await page(app, "/patients/\(zoe.id!)/course", clinical).contains("<strong>4 of 4</strong>"))
                // Unpaid, nothing can be given back in cash; paid by the terminal, the unused two of three sessions come back pro
                // rata: 400.00, by a credit note on the package's invoice.
                let unpaid = try await post(app, "/packages/\(acnePackage.id!)/refund", desk, [("method", "cash"), ("reason", "Moving away")])
                #expect(unpaid.0 == .unprocessableEntity && unpaid.1.contains("paid and not yet given back"))
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "600.00"), ("method", "card-terminal")]).0 == .seeOther)
                let direct = try await post(app, "/invoices/\(invoice.id!)/refund", desk, [("amount", "600.00"), ("method", "cash"), ("reason", "Whole")])
                #expect(direct.0 == .conflict && direct.1.contains("for a package"), "a package's invoice is refunded through the package, which closes it")
                #expect(try await post(app, "/packages/\(acnePackage.id!)/refund", desk, [("method", "cash"), ("reason", "")]).0 == .unprocessableEntity)
                let refund = try await post(app, "/packages/\(acnePackage.id!)/refund", desk, [("method", "cash"), ("reason", "Moving away")])
                #expect(refund.0 == .seeOther)
                let note = try #require(try await Invoice.query(on: app.db).filter(\.$creditsInvoiceID == invoice.id).first())
                #expect(note.gross == 40000 && (note.reason ?? "").contains("2 unused of 3 sessions"))
                let closed = try #require(try await PatientPackage.find(acnePackage.id, on: app.db))
                #expect(closed.status == "refunded" && closed.refundedSessions == 2 && closed.creditNoteID == note.id)
                #expect(try await post(app, "/packages/\(acnePackage.id!)/refund", desk, [("method", "cash"), ("reason", "Again")]).0 == .conflict)
                #expect(try await page(app, "/patients/\(zoe.id!)", desk).contains("(refunded)"))
                // Expiry at its boundary: the fitted package's last day still redeems; the day after does not.
                try await PackageRedemption.query(on: app.db).delete()
                try await PatientPackage.query(on: app.db).filter(\.$id != fitted.id!).set(\.$status, to: "refunded").update()
                let last = try #require(CalendarDate(iso: fitted.expiresOn))
                let store = DermisApp.Packages(db: app.db, clinicID: zoe.$clinic.id, now: settings.clock.now())
                #expect(try await store.redeem(chart: chart, day: last.adding(days: 1)) == nil, "the day after the last day")
                #expect(try await store.redeem(chart: chart, day: last)?.id == fitted.id, "the last day")
                #expect(try await store.redeem(chart: chart, day: last) == nil, "a chart redeems once")
            }
        }

        @Test func theMoneyReportSplitsWhatWasInvoicedByServiceAndPractitionerAndCountsWhatIsStillOwed() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let practitioner = try await makeStaff(app, role: .practitioner)
                let clinical = try await signIn(app, practitioner, clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let ines = try #require(try await StaffUser.query(on: app.db).filter(\.$email == "ines.doctor@demo.dermis.test").first())
                // The demo bills in pounds, prices including 20 % VAT: two treatments at 250.00 given by Inês (net 416.67),
                // a consultation at 50.00 naming nobody (net 41.67), then credited in full.
                #expect(try await post(app, "/patients/\(zoe.id!)/invoices", desk, [("service[]", "treatment"), ("quantity[]", "2"),
                                                                                    ("practitioner", ines.id!.uuidString)]).0 == .seeOther)
                #expect(try await post(app, "/patients/\(zoe.id!)/invoices", desk, [("service[]", "treatment"), ("practitioner", UUID().uuidString)]).0
                        == .unprocessableEntity, "an unknown practitioner is named")
                #expect(try await post(app, "/patients/\(zoe.id!)/invoices", desk, [("service[]", "consultation")]).0 == .seeOther)
                let consultation = try #require(try await Invoice.query(on: app.db).sort(\.$number, .descending).first())
                #expect(try await post(app, "/invoices/\(consultation.id!)/refund", desk, [("amount", "50.00"), ("method", "none"),
                                                                                             ("reason", "Issued in error")]).0 == .seeOther)
                // Packages: acne scars, 3 sessions at 600.00 (net 500.00), one used by a signed chart; a top-up expiring soon.
                #expect(try await post(app, "/admin/billing/packages", admin, [("name", "Acne scar course"), ("service", "treatment"),
                    ("indication", "acne-scars"), ("sessions", "3"), ("price", "600"), ("validityDays", "180")]).0 == .seeOther)
                #expect(try await post(app, "/admin/billing/packages", admin, [("name", "Top-up"), ("service", "treatment"),
                    ("indication", "melasma"), ("sessions", "1"), ("price", "100"), ("validityDays", "20")]).0 == .seeOther)
                for offer in try await PackageOffer.query(on: app.db).all() {
                    #expect(try await post(app, "/patients/\(zoe.id!)/packages", desk, [("offer", offer.id!.uuidString)]).0 == .seeOther)
                }
                let course = Course(app: app, session: clinical, patientID: zoe.id!)
                try await course.ready()
                _ = try await signedChart(app, course, settings)
                var page = ""
                try await app.testing().test(.GET, "/invoices/reports", headers: desk) { #expect($0.status == .forbidden) }
                try await app.testing().test(.GET, "/invoices/reports", headers: admin) { page = $0.body.string }
                func row(_ table: String, _ name: String) -> String? {
                    guard let start = page.range(of: "id=\"\(table)\"") else { return nil }
                    let rest = page[start.upperBound...]
                    guard let cell = rest.range(of: "<td>\(name)</td><td>") else { return nil }
                    return String(rest[cell.upperBound...].prefix { $0 != "<" })
                }
                #expect(row("by-service", "Microneedling treatment") == "GBP 1000.00", "416.67, and the packages: 500.00 and 83.33")
                #expect(row("by-service", "Consultation") == "GBP 0.00", "invoiced and credited")
                #expect(row("by-practitioner", ines.name) == "GBP 416.67")
                #expect(row("by-practitioner", "Not named on the invoice") == "GBP 583.33")
                #expect(row("delivered", practitioner.user.name) == "GBP 166.67", "one of three sessions of a 500.00 net package")
                #expect(page.contains("id=\"liability-total\">GBP 416.66<"), "two thirds of 500.00 (333.33) and the unused top-up (83.33)")
                #expect(page.contains("id=\"expiring\"") && page.contains("Top-up"))
                try await app.testing().test(.GET, "/invoices/reports?from=2026-13-01", headers: admin) { res in
                    #expect(res.status == .unprocessableEntity && res.body.string.contains("data-field=\"from\""))
                }
                var csv = ""
                try await app.testing().test(.GET, "/invoices/export/package-liability.csv", headers: admin) { csv = $0.body.string }
                let rows = try CSV.parse(csv)
                #expect(rows.count == 3 && rows[1].fields[3] == "Top-up" && rows[1].fields[8] == "83.33" && rows[2].fields[8] == "333.33")
            }
        }

        @Test func theRefundRulesAtTheirEdges() throws {
            #expect(try PackageRefundRule.proRata.refund(price: 1000, sessions: 3, used: 1, singlePrice: nil) == 667, "666.67: a half and more rounds up")
            #expect(try PackageRefundRule.proRata.refund(price: 1000, sessions: 3, used: 2, singlePrice: nil) == 333)
            #expect(try PackageRefundRule.proRata.refund(price: 1000, sessions: 3, used: 0, singlePrice: nil) == 1000)
            #expect(try PackageRefundRule.proRata.refund(price: 1000, sessions: 3, used: 3, singlePrice: nil) == 0)
            #expect(try PackageRefundRule.singlePrice.refund(price: 60000, sessions: 3, used: 1, singlePrice: 25000) == 35000)
            #expect(try PackageRefundRule.singlePrice.refund(price: 60000, sessions: 3, used: 3, singlePrice: 25000) == 0)
            #expect(try PackageRefundRule.singlePrice.refund(price: 60000, sessions: 3, used: 2, singlePrice: 25000) == 10000)
            #expect(try PackageRefundRule.singlePrice.refund(price: 60000, sessions: 4, used: 3, singlePrice: 25000) == 0, "never below nothing")
        }
    }
}
