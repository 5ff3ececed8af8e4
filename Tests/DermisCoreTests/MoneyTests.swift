import Foundation
import Testing
@testable import DermisCore

/// Money at its edges: minor units per ISO 4217, parsing that refuses what it cannot hold exactly, half-up rounding
/// per line, tax inside and on top of prices, allocation that never loses a minor unit, and partial refunds.
@Suite struct MoneyTests {
    let gbp = Currency("gbp")!
    let vat = TaxRate(percent: "20")!

    @Test func currenciesKnowTheirMinorUnits() {
        #expect(gbp.code == "GBP" && gbp.minorPerMajor == 100)
        #expect(Currency("JPY")!.minorPerMajor == 1 && Currency("KWD")!.minorPerMajor == 1000)
        #expect(Currency("XXX") == nil && Currency("") == nil)
        #expect(gbp.format(123_456) == "1234.56" && gbp.format(5) == "0.05" && gbp.format(-5) == "-0.05" && gbp.format(0) == "0.00")
        #expect(Currency("JPY")!.format(1234) == "1234" && Currency("KWD")!.format(1) == "0.001")
    }

    @Test(arguments: [("12.34", 1234), ("12", 1200), ("12.3", 1230), ("0.01", 1), ("0", 0)])
    func amountsParseExactly(text: String, minor: Int64) {
        #expect(gbp.parse(text) == minor)
    }

    @Test(arguments: ["12.345", "-1", "1,000", "1e3", "", ".5", "5.", "12.3x", "１２", "99999999999999"])
    func whatCannotBeHeldExactlyIsRefused(text: String) {
        #expect(gbp.parse(text) == nil, "\(text)")
    }

    @Test func ratesAreWholeBasisPoints() {
        #expect(vat.basisPoints == 2000 && TaxRate(percent: "5.5")?.basisPoints == 550 && TaxRate(percent: "0") == .zero)
        #expect(TaxRate(percent: "100.01") == nil && TaxRate(percent: "-5") == nil && TaxRate(percent: "5.555") == nil)
        #expect(TaxRate(percent: "5.5")?.percentText == "5.50" && vat.percentText == "20")
    }

    @Test func divisionRoundsHalfAwayFromZero() {
        #expect(MoneyMath.divide(5, by: 10) == 1 && MoneyMath.divide(4, by: 10) == 0 && MoneyMath.divide(15, by: 10) == 2)
        #expect(MoneyMath.divide(-5, by: 10) == -1 && MoneyMath.divide(-4, by: 10) == 0)
        #expect(throws: MoneyMath.Overflow.self) { try MoneyMath.multiply(.max, 2) }
    }

    @Test func taxOnNetAndInsideGrossRoundedPerLine() throws {
        // 20 % of 0.02 is 0.004 → 0; of 0.03 is 0.006 → 0.01; of 0.025 exactly a half: 2.5 → 3 (half up).
        #expect(try MoneyMath.tax(onNet: 2, vat) == 0 && MoneyMath.tax(onNet: 3, vat) == 1)
        #expect(try MoneyMath.tax(onNet: 25, TaxRate(basisPoints: 1000)!) == 3)
        // £250.00 including 20 % VAT: £41.67 of tax (41.666…), £208.33 net.
        let inclusive = try InvoiceTotals([InvoiceLine(description: "Microneedling, full face", quantity: 1, unitPrice: 25_000, taxRate: vat)],
                                          pricesIncludeTax: true)
        #expect(inclusive.lines[0] == LineTotals(net: 20_833, tax: 4_167, gross: 25_000))
        // Three lines of 0.03 at 20 %: rounded per line that is 3 × 0.01 = 0.03 of tax, where once on the total it would be
        // 0.018 → 0.02. The invoice says which rule it follows.
        let three = try InvoiceTotals(Array(repeating: InvoiceLine(description: "Sample", quantity: 1, unitPrice: 3, taxRate: vat), count: 3),
                                      pricesIncludeTax: false)
        #expect(three.tax == 3 && three.net == 9 && three.gross == 12)
        #expect(three.byRate == [.init(rate: vat, net: 9, tax: 3)])
    }

    @Test func totalsAreTheSumsOfTheLinesAcrossRates() throws {
        let lines = [InvoiceLine(description: "Treatment", quantity: 3, unitPrice: 20_000, taxRate: vat),
                     InvoiceLine(description: "Aftercare serum", quantity: 2, unitPrice: 1_999, taxRate: vat),
                     InvoiceLine(description: "Consultation", quantity: 1, unitPrice: 5_000, taxRate: .zero)]
        let totals = try InvoiceTotals(lines, pricesIncludeTax: false)
        #expect(totals.lines.map(\.tax) == [12_000, 800, 0])  // 799.6 → 800
        #expect(totals.net == 68_998 && totals.tax == 12_800 && totals.gross == 81_798)
        #expect(totals.byRate.map(\.rate) == [.zero, vat] && totals.byRate[1].net == 63_998)
    }

    @Test func badLinesAreNamedByPath() {
        #expect(throws: InvalidInput.self) { try InvoiceTotals([], pricesIncludeTax: false) }
        #expect(throws: InvalidInput.self) {
            try InvoiceTotals([InvoiceLine(description: String(repeating: "x", count: 201), quantity: 1, unitPrice: 1, taxRate: vat)],
                              pricesIncludeTax: false)
        }
        do {
            _ = try InvoiceTotals([InvoiceLine(description: " ", quantity: 0, unitPrice: -1, taxRate: vat)], pricesIncludeTax: false)
            Issue.record("accepted a bad line")
        } catch let invalid as InvalidInput {
            #expect(invalid.issues.map(\.path) == ["lines[0].description", "lines[0].quantity", "lines[0].unitPrice"])
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func allocationNeverLosesOrInventsAMinorUnit() throws {
        #expect(try MoneyMath.allocate(100, by: [1, 1, 1]) == [34, 33, 33])
        #expect(try MoneyMath.allocate(2, by: [1, 1, 1]) == [1, 1, 0])
        #expect(try MoneyMath.allocate(1000, by: [0, 0]) == [0, 0])
        for total in [0, 1, 7, 99, 12_345] as [Int64] {
            #expect(try MoneyMath.allocate(total, by: [3, 5, 11, 0, 1]).reduce(0, +) == total)
        }
    }

    @Test func partialRefundsSplitProRataAndNeverExceedWhatIsLeft() throws {
        let totals = try InvoiceTotals([InvoiceLine(description: "Package of 3", quantity: 1, unitPrice: 60_000, taxRate: vat),
                                        InvoiceLine(description: "Serum", quantity: 1, unitPrice: 2_400, taxRate: .zero)],
                                       pricesIncludeTax: true)
        // A third of the package back (one unused session of three: £200.00) and nothing of the serum? Pro rata over what
        // is left: the refund is split over both lines by their gross.
        let first = try totals.refund(20_000, alreadyRefunded: [])
        #expect(first.map(\.gross).reduce(0, +) == 20_000)
        #expect(first[0].gross == 19_231 && first[1].gross == 769)  // 60000 : 2400 of 20000, largest remainder first
        #expect(first[0].tax == MoneyMath.divide(19_231 * 10_000, by: 60_000) && first[1].tax == 0)
        // The rest, in two more refunds: every line comes back exactly as charged, never a minor unit more.
        let second = try totals.refund(30_000, alreadyRefunded: first)
        let earlier = zip(first, second).map { LineTotals(net: $0.net + $1.net, tax: $0.tax + $1.tax, gross: $0.gross + $1.gross) }
        let left = totals.gross - 50_000
        #expect(throws: InvalidInput.self) { try totals.refund(left + 1, alreadyRefunded: earlier) }
        let last = try totals.refund(left, alreadyRefunded: earlier)
        for i in totals.lines.indices {
            #expect(earlier[i].gross + last[i].gross == totals.lines[i].gross)
            #expect(earlier[i].tax + last[i].tax == totals.lines[i].tax)
        }
        #expect(throws: InvalidInput.self) { try totals.refund(0, alreadyRefunded: []) }
    }
}
