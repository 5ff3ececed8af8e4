import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// Invoice numbers per clinic with no gaps and no duplicates under concurrent sales, on both databases; credit notes
    /// that never refund more than was charged; nothing edited after issue.
    @Suite struct Invoices {
        let vat = TaxRate(percent: "20")!

        /// The store of a clinic that has not set billing up yet (the demo's settings taken away).
        func store(_ app: Application) async throws -> InvoiceStore {
            try await ClinicBilling.query(on: app.db).delete()
            return InvoiceStore(db: app.db, clinicID: try #require(try await Clinic.query(on: app.db).first()).requireID())
        }

        func treatment(_ pence: Int64 = 25_000) -> [InvoiceLine] {
            [InvoiceLine(description: "Microneedling, full face", quantity: 1, unitPrice: pence, taxRate: vat)]
        }

        @Test func aClinicChoosesItsCurrencyBeforeItsFirstInvoice() async throws {
            try await withDermis { app, _ in
                let store = try await store(app)
                await #expect(throws: DomainError.self) { try await store.issue(treatment(), patientID: nil, by: UUID(), at: testNow) }
                await #expect(throws: InvalidInput.self) { try await store.configure(currency: "GBX", pricesIncludeTax: true, at: testNow) }
                _ = try await store.configure(currency: "gbp", pricesIncludeTax: true, at: testNow)
                let first = try await store.issue(treatment(), patientID: nil, by: UUID(), at: testNow)
                #expect(first.number == 1 && first.currency == "GBP" && first.gross == 25_000 && first.tax == 4_167 && first.net == 20_833)
                // Its currency is fixed once it has invoiced.
                await #expect(throws: DomainError.self) { try await store.configure(currency: "EUR", pricesIncludeTax: true, at: testNow) }
            }
        }

        @Test func fiftySalesAtOnceAreNumberedOneToFiftyWithNoGapsAndNoDuplicates() async throws {
            try await withDermis { app, _ in
                let store = try await store(app)
                _ = try await store.configure(currency: "GBP", pricesIncludeTax: true, at: testNow)
                let numbers = try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<50 {
                        group.addTask { try await store.issue(treatment(Int64(1_000 + i)), patientID: nil, by: UUID(), at: testNow).number }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(numbers.sorted() == Array(1...50))
                let stored = try await Invoice.query(on: app.db).all().map(\.number).sorted()
                #expect(stored == Array(1...50))
            }
        }

        @Test func aSaleThatRollsBackTakesItsNumberBack() async throws {
            try await withDermis { app, _ in
                let store = try await store(app)
                _ = try await store.configure(currency: "GBP", pricesIncludeTax: false, at: testNow)
                #expect(try await store.issue(treatment(), patientID: nil, by: UUID(), at: testNow).number == 1)
                struct Abandoned: Error {}
                await #expect(throws: Abandoned.self) {
                    try await Writes.transaction(app.db) { db in
                        _ = try await InvoiceStore(db: db, clinicID: store.clinicID).issue(treatment(), patientID: nil, by: UUID(), at: testNow)
                        throw Abandoned()
                    }
                }
                #expect(try await store.issue(treatment(), patientID: nil, by: UUID(), at: testNow).number == 2)
                // Bad lines are named and take no number either.
                await #expect(throws: InvalidInput.self) {
                    try await store.issue([InvoiceLine(description: "", quantity: 0, unitPrice: 1, taxRate: vat)], patientID: nil, by: UUID(), at: testNow)
                }
                #expect(try await store.issue(treatment(), patientID: nil, by: UUID(), at: testNow).number == 3)
            }
        }

        @Test func creditNotesRefundInPartsNeverMoreAndContinueTheNumbers() async throws {
            try await withDermis { app, _ in
                let store = try await store(app)
                _ = try await store.configure(currency: "GBP", pricesIncludeTax: true, at: testNow)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()).requireID()
                let sale = try await store.issue([InvoiceLine(description: "Package: 3 sessions", quantity: 1, unitPrice: 60_000, taxRate: vat)],
                                                 patientID: zoe, by: UUID(), at: testNow)
                let first = try await store.credit(try sale.requireID(), amount: 20_000, reason: "One unused session", by: UUID(), at: testNow)
                #expect(first.number == 2 && first.kind == Invoice.creditNoteKind && first.creditsInvoiceID == sale.id && first.patientID == zoe)
                #expect(first.gross == 20_000 && first.tax == 3_333 && first.net == 16_667)
                await #expect(throws: InvalidInput.self) {
                    try await store.credit(try sale.requireID(), amount: 40_001, reason: "Too much", by: UUID(), at: testNow)
                }
                let rest = try await store.credit(try sale.requireID(), amount: 40_000, reason: "Course stopped", by: UUID(), at: testNow)
                #expect(rest.number == 3 && first.tax + rest.tax == sale.tax && first.net + rest.net == sale.net)
                await #expect(throws: InvalidInput.self) {
                    try await store.credit(try sale.requireID(), amount: 1, reason: "Nothing left", by: UUID(), at: testNow)
                }
                await #expect(throws: InvalidInput.self) {
                    try await store.credit(try sale.requireID(), amount: 1, reason: "", by: UUID(), at: testNow)
                }
                // The invoice itself is as it was issued.
                let again = try #require(try await Invoice.find(sale.requireID(), on: app.db))
                #expect(again.gross == 60_000 && again.lineTotals == sale.lineTotals)
            }
        }

        @Test func twoRefundsAtOnceNeverExceedTheInvoice() async throws {
            try await withDermis { app, _ in
                let store = try await store(app)
                _ = try await store.configure(currency: "GBP", pricesIncludeTax: true, at: testNow)
                let sale = try await store.issue(treatment(30_000), patientID: nil, by: UUID(), at: testNow)
                let id = try sale.requireID()
                let results = await withTaskGroup(of: Bool.self) { group in
                    for _ in 0..<4 {
                        group.addTask { (try? await store.credit(id, amount: 10_000, reason: "Refund at once", by: UUID(), at: testNow)) != nil }
                    }
                    return await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(results.filter { $0 }.count == 3)
                let refunded = try await Invoice.query(on: app.db).filter(\.$creditsInvoiceID == id).all().map(\.gross).reduce(0, +)
                #expect(refunded == 30_000)
                #expect(try await Invoice.query(on: app.db).all().map(\.number).sorted() == [1, 2, 3, 4])
            }
        }
    }
}
