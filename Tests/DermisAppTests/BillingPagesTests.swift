import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    @Suite struct BillingPages {
        func post(_ app: Application, _ path: String, _ headers: HTTPHeaders, _ fields: [(String, String)]) async throws -> (HTTPStatus, String, String?) {
            var result: (HTTPStatus, String, String?) = (.ok, "", nil)
            try await app.testing().test(.POST, path, headers: headers.merging(formHeaders), body: form(fields)) { res in
                result = (res.status, res.body.string, res.headers.first(name: .location))
            }
            return result
        }

        func get(_ app: Application, _ path: String, _ headers: HTTPHeaders) async throws -> (HTTPStatus, String, HTTPHeaders) {
            var result: (HTTPStatus, String, HTTPHeaders) = (.ok, "", [:])
            try await app.testing().test(.GET, path, headers: headers) { res in result = (res.status, res.body.string, res.headers) }
            return result
        }

        static let settings: [(String, String)] = [("currency", "GBP"), ("pricesIncludeTax", "on"), ("defaultTax", "20"), ("deposit", "50"),
                                                   ("noticeHours", "48"), ("price.consultation", "50"), ("price.treatment", "249.99"),
                                                   ("tax.treatment", ""), ("price.review", "0"), ("tax.review", "0")]

        @Test func anAdminSetsPricesTaxAndTheDepositPolicyAndBadValuesAreNamedAndNothingIsStored() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                #expect(try await get(app, "/admin/billing", desk).0 == .forbidden)
                let bad = try await post(app, "/admin/billing", admin, [("currency", "GBP"), ("defaultTax", "20.555"), ("deposit", "3.005"),
                                                                        ("noticeHours", "999"), ("price.consultation", "abc"), ("tax.treatment", "101")])
                #expect(bad.0 == .unprocessableEntity)
                for field in ["defaultTax", "deposit", "noticeHours", "price.consultation", "tax.treatment"] {
                    #expect(bad.1.contains("data-field=\"\(field)\""), "names \(field)")
                }
                #expect(bad.1.contains("value=\"abc\""), "what was typed is shown again")
                #expect(try await post(app, "/admin/billing", admin, [("currency", "XYZ")]).1.contains("data-field=\"currency\""))
                let untouched = try #require(try await ClinicBilling.query(on: app.db).first())
                #expect(untouched.depositAmount == 5000 && untouched.defaultTaxBasisPoints == 2000, "nothing stored from a refused form (the demo's settings)")
                #expect(try await post(app, "/admin/billing", admin, Self.settings).0 == .seeOther)
                let billing = try #require(try await ClinicBilling.query(on: app.db).first())
                #expect(billing.currency == "GBP" && billing.pricesIncludeTax && billing.defaultTaxBasisPoints == 2000)
                #expect(billing.depositAmount == 5000 && billing.noticeHours == 48)
                let treatment = try #require(try await Service.query(on: app.db).filter(\.$code == "treatment").first())
                #expect(treatment.priceMinor == 24999 && treatment.taxBasisPoints == nil)
                let page = try await get(app, "/admin/billing", admin).1
                #expect(page.contains("value=\"249.99\"") && page.contains("No payment provider is configured"))
                #expect(try await ClinicBilling.query(on: app.db).count() == 1)
                // Once an invoice exists, the currency is fixed.
                let patient = try #require(try await Patient.query(on: app.db).first())
                #expect(try await post(app, "/patients/\(patient.id!)/invoices", desk, [("service[]", "consultation"), ("quantity[]", "1")]).0 == .seeOther)
                var euros = Self.settings
                euros[0] = ("currency", "EUR")
                let refused = try await post(app, "/admin/billing", admin, euros)
                #expect(refused.0 == .conflict && refused.1.contains("cannot change"))
                #expect(try await ClinicBilling.query(on: app.db).first()?.currency == "GBP")
            }
        }

        @Test func theFrontDeskInvoicesTakesPaymentsAndRefundsWithCreditNotesAndTheAccountantGetsCSV() async throws {
            try await withDermis { app, settings in
                try await ClinicBilling.query(on: app.db).delete()   // a clinic that has not set billing up yet
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let patient = try #require(try await Patient.query(on: app.db).sort(\.$familyName).first())
                // Before billing is set up: a clear refusal, nothing issued.
                let early = try await post(app, "/patients/\(patient.id!)/invoices", desk, [("service[]", "consultation")])
                #expect(early.0 == .conflict || early.0 == .unprocessableEntity)
                #expect(try await Invoice.query(on: app.db).count() == 0)
                #expect(try await post(app, "/admin/billing", admin, Self.settings).0 == .seeOther)
                // Bad lines are named; nothing is issued and no number is used.
                let bad = try await post(app, "/patients/\(patient.id!)/invoices", desk, [("service[]", "treatment"), ("quantity[]", "0"),
                                                                                        ("service[]", "botox"), ("quantity[]", "1")])
                #expect(bad.0 == .unprocessableEntity && bad.1.contains("data-field=\"quantity[0]\"") && bad.1.contains("data-field=\"service[1]\""))
                #expect(try await post(app, "/patients/\(patient.id!)/invoices", desk, [("service[]", ""), ("quantity[]", "1")]).0 == .unprocessableEntity)
                // 3 treatments at 249.99 including 20 %, and a consultation at 50.00.
                let issued = try await post(app, "/patients/\(patient.id!)/invoices", desk, [("service[]", "treatment"), ("quantity[]", "3"),
                                                                                           ("service[]", "consultation"), ("quantity[]", "1"),
                                                                                           ("service[]", ""), ("quantity[]", "1")])
                #expect(issued.0 == .seeOther)
                let invoice = try #require(try await Invoice.query(on: app.db).first())
                #expect(invoice.number == 1 && invoice.gross == 79997)
                // 749.97 gross at 20 % included: tax 124.995 → 125.00 (a half up); 50.00: tax 8.333 → 8.33.
                #expect(invoice.tax == 12500 + 833 && invoice.net == 79997 - 13333)
                let page = try await get(app, "/invoices/\(invoice.id!)", desk).1
                #expect(page.contains("INV-000001") && page.contains("GBP 799.97") && page.contains("Still due: <strong>GBP 799.97"))
                #expect(page.contains(InvoiceTotals.roundingRule))
                // Payments: more than is due is refused and named; cash then the terminal for the rest.
                let over = try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "800.00"), ("method", "cash")])
                #expect(over.0 == .unprocessableEntity && over.1.contains("data-field=\"amount\"") && over.1.contains("GBP 799.97 still due"))
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "1.001"), ("method", "cash")]).0 == .unprocessableEntity)
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "10"), ("method", "cheque")]).0 == .unprocessableEntity)
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "100.00"), ("method", "cash")]).0 == .seeOther)
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "699.97"), ("method", "card-terminal"),
                                                                                         ("reference", "slip 0042")]).0 == .seeOther)
                #expect(try await post(app, "/invoices/\(invoice.id!)/payments", desk, [("amount", "0.01"), ("method", "cash")]).0 == .unprocessableEntity)
                let paidPage = try await get(app, "/invoices/\(invoice.id!)", desk).1
                #expect(paidPage.contains("Still due: <strong>GBP 0.00") && paidPage.contains("id=\"receipt\""), "paid in full: a receipt")
                #expect(!page.contains("id=\"receipt\""), "not before")
                // A refund of one treatment, by the terminal: a credit note, the invoice unchanged.
                #expect(try await post(app, "/invoices/\(invoice.id!)/refund", desk, [("amount", "249.99"), ("method", "card-terminal"), ("reason", "")]).0
                        == .unprocessableEntity, "a refund says why")
                let refunded = try await post(app, "/invoices/\(invoice.id!)/refund", desk, [("amount", "249.99"), ("method", "card-terminal"),
                                                                                             ("reason", "One session not taken")])
                #expect(refunded.0 == .seeOther)
                let note = try #require(try await Invoice.query(on: app.db).filter(\.$kind == "credit-note").first())
                #expect(note.number == 2 && note.gross == 24999 && note.creditsInvoiceID == invoice.id)
                #expect(try await Invoice.find(invoice.id, on: app.db)?.gross == 79997, "the invoice never changes")
                let notePage = try await get(app, "/invoices/\(note.id!)", desk).1
                #expect(notePage.contains("CN-000002") && notePage.contains("INV-000001") && notePage.contains("One session not taken"))
                // Never more back than was paid and not yet given back; no cancelling of what is already paid.
                let tooMuch = try await post(app, "/invoices/\(invoice.id!)/refund", desk, [("amount", "550.00"), ("method", "cash"), ("reason", "Too much")])
                #expect(tooMuch.0 == .unprocessableEntity && tooMuch.1.contains("GBP 549.98"))
                #expect(try await post(app, "/invoices/\(invoice.id!)/refund", desk, [("amount", "1.00"), ("method", "none"), ("reason", "Cancel")]).0
                        == .unprocessableEntity)
                #expect(try await Invoice.query(on: app.db).count() == 2)
                // The list, and the accountant's files (admins only).
                #expect(try await get(app, "/invoices", desk).1.contains("INV-000001"))
                #expect(try await get(app, "/invoices/export/invoices.csv", desk).0 == .forbidden)
                let (status, invoices, headers) = try await get(app, "/invoices/export/invoices.csv", admin)
                #expect(status == .ok && headers.first(name: .contentType)?.hasPrefix("text/csv") == true)
                let rows = try CSV.parse(invoices)
                #expect(rows.count == 3 && rows[0].fields.first == "number")
                #expect(rows[1].fields == ["INV-000001", "invoice", invoice.issuedAt.formatted(.iso8601), "GBP", patient.fullName, patient.id!.uuidString, "",
                                           "666.64", "133.33", "799.97", "yes", ""])
                #expect(rows[2].fields[0] == "CN-000002" && rows[2].fields[6] == "INV-000001" && rows[2].fields[9] == "249.99")
                let payments = try CSV.parse(try await get(app, "/invoices/export/payments.csv", admin).1)
                #expect(payments.map { $0.fields[4] } == ["amount", "100.00", "699.97"] && payments[2].fields[5] == "slip 0042")
                let refunds = try CSV.parse(try await get(app, "/invoices/export/refunds.csv", admin).1)
                #expect(refunds.count == 2 && refunds[1].fields[0] == "CN-000002" && refunds[1].fields[2] == "card-terminal")
                #expect(try await get(app, "/invoices/export/secrets.csv", admin).0 == .notFound)
                // Every look at an invoice is audited.
                let reads = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Invoice").count()
                #expect(reads >= 5)
            }
        }
    }
}
