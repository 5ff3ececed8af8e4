import Foundation

/// A currency by its ISO 4217 code, with the number of digits its minor unit has (2 for GBP: pence; 0 for JPY; 3 for
/// KWD). Amounts are always whole minor units: never floating point.
public struct Currency: Hashable, Sendable, Codable {
    public let code: String
    public let minorDigits: Int

    /// ISO 4217's minor-unit digits of the currencies a clinic may bill in (list one: the standard's table, not a guess).
    static let minorDigits: [String: Int] = [
        "AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2,
        "HKD": 2, "HUF": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "NOK": 2, "NZD": 2,
        "OMR": 3, "PLN": 2, "QAR": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2, "USD": 2, "VND": 0, "ZAR": 2,
    ]

    /// The currency for `code` (any case), or nil when Dermis does not know it.
    public init?(_ code: String) {
        let upper = code.uppercased()
        guard let digits = Self.minorDigits[upper] else { return nil }
        self.code = upper
        self.minorDigits = digits
    }

    public static var knownCodes: [String] { minorDigits.keys.sorted() }

    /// How many minor units make one major unit: 100 for GBP, 1 for JPY, 1000 for KWD.
    public var minorPerMajor: Int64 { (0..<minorDigits).reduce(1) { value, _ in value * 10 } }

    /// `1234` GBP → "12.34"; `1234` JPY → "1234"; negative amounts with a minus sign.
    public func format(_ minor: Int64) -> String {
        let sign = minor < 0 ? "-" : ""
        let magnitude = minor.magnitude
        guard minorDigits > 0 else { return sign + String(magnitude) }
        let unit = UInt64(minorPerMajor)
        let fraction = String(magnitude % unit)
        return sign + String(magnitude / unit) + "." + String(repeating: "0", count: minorDigits - fraction.count) + fraction
    }

    /// "12.34" (or "12", "12.3") → 1234 minor units; nil for anything else: more decimals than the currency has, a sign,
    /// grouping, an exponent, or more than 15 digits (well inside Int64 and exact in JSON numbers).
    public func parse(_ text: String) -> Int64? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = parts.first, !whole.isEmpty, whole.count <= 13,
              whole.allSatisfy(\.isASCII), whole.allSatisfy(\.isNumber) else { return nil }
        var fraction = parts.count == 2 ? String(parts[1]) : ""
        guard fraction.count <= minorDigits, fraction.allSatisfy({ $0.isASCII && $0.isNumber }), parts.count == 1 || !fraction.isEmpty else { return nil }
        fraction += String(repeating: "0", count: minorDigits - fraction.count)
        guard let major = Int64(whole), let minor = Int64(fraction.isEmpty ? "0" : fraction) else { return nil }
        return major * minorPerMajor + minor
    }
}

/// A tax rate as a whole number of hundredths of a percent (basis points): 2000 is 20 %, 550 is 5.5 %. Exact, like
/// money: no rate is ever a floating-point number.
public struct TaxRate: Hashable, Sendable, Codable, Comparable {
    public let basisPoints: Int

    public init?(basisPoints: Int) {
        guard (0...10_000).contains(basisPoints) else { return nil }
        self.basisPoints = basisPoints
    }

    /// "20", "5.5", "0" (percent, at most two decimals, 0 to 100) → the rate; nil otherwise.
    public init?(percent text: String) {
        guard let points = Currency("GBP")!.parse(text), points <= 10_000 else { return nil }
        self.basisPoints = Int(points)
    }

    public static let zero = TaxRate(basisPoints: 0)!

    public var percentText: String { Currency("GBP")!.format(Int64(basisPoints)).replacingOccurrences(of: ".00", with: "") }

    public static func < (a: TaxRate, b: TaxRate) -> Bool { a.basisPoints < b.basisPoints }
}

/// Integer arithmetic on minor units: division rounded half away from zero (the rounding Dermis states on every
/// invoice: each line's tax to the nearest minor unit, a half up), with overflow refused rather than wrapped.
public enum MoneyMath {
    public struct Overflow: Error, Sendable {}

    /// `numerator / denominator` rounded half away from zero; `denominator` > 0.
    public static func divide(_ numerator: Int64, by denominator: Int64) -> Int64 {
        precondition(denominator > 0)
        let quotient = numerator / denominator, remainder = numerator % denominator
        if remainder.magnitude * 2 >= denominator.magnitude { return quotient + (numerator < 0 ? -1 : 1) }
        return quotient
    }

    public static func multiply(_ a: Int64, _ b: Int64) throws -> Int64 {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw Overflow() }
        return value
    }

    public static func add(_ a: Int64, _ b: Int64) throws -> Int64 {
        let (value, overflow) = a.addingReportingOverflow(b)
        if overflow { throw Overflow() }
        return value
    }

    /// `amount × rate` of tax, rounded: on a net amount.
    public static func tax(onNet net: Int64, _ rate: TaxRate) throws -> Int64 {
        divide(try multiply(net, Int64(rate.basisPoints)), by: 10_000)
    }

    /// The tax inside a gross amount (`gross × rate / (1 + rate)`), rounded: on a price that includes tax.
    public static func tax(inGross gross: Int64, _ rate: TaxRate) throws -> Int64 {
        divide(try multiply(gross, Int64(rate.basisPoints)), by: 10_000 + Int64(rate.basisPoints))
    }

    /// `total` split in proportion to `weights` (each part rounded down, the remainder given a minor unit at a time to the
    /// largest remainders, ties to the earlier): the parts always add up to `total` exactly.
    public static func allocate(_ total: Int64, by weights: [Int64]) throws -> [Int64] {
        let sum = try weights.reduce(Int64(0)) { try add($0, $1) }
        guard sum > 0 else { return weights.map { _ in 0 } }
        var parts: [Int64] = []
        var remainders: [(index: Int, remainder: Int64)] = []
        for (index, weight) in weights.enumerated() {
            let scaled = try multiply(total, weight)
            parts.append(scaled / sum)
            remainders.append((index, scaled % sum))
        }
        var left = total - parts.reduce(0, +)
        for entry in remainders.sorted(by: { $0.remainder > $1.remainder || ($0.remainder == $1.remainder && $0.index < $1.index) }) where left > 0 {
            parts[entry.index] += 1
            left -= 1
        }
        return parts
    }
}

/// One line of an invoice: what was sold, how many, at what unit price, at which tax rate. Whether the unit price
/// includes tax is the clinic's setting, the same for every line of an invoice.
public struct InvoiceLine: Hashable, Sendable, Codable {
    public var description: String
    public var quantity: Int
    /// Minor units; includes tax when the invoice's `pricesIncludeTax`.
    public var unitPrice: Int64
    public var taxRate: TaxRate
    /// For the revenue reports: the service code sold (absent for a membership or a deposit) and the practitioner who
    /// gave it (a staff id), when known.
    public var service: String?
    public var practitioner: String?

    public init(description: String, quantity: Int, unitPrice: Int64, taxRate: TaxRate, service: String? = nil, practitioner: String? = nil) {
        self.description = description
        self.quantity = quantity
        self.unitPrice = unitPrice
        self.taxRate = taxRate
        self.service = service
        self.practitioner = practitioner
    }
}

/// A line's amounts once worked out: net + tax = gross, each in minor units, the tax rounded on this line.
public struct LineTotals: Hashable, Sendable, Codable {
    public var net: Int64
    public var tax: Int64
    public var gross: Int64

    public init(net: Int64, tax: Int64, gross: Int64) {
        self.net = net
        self.tax = tax
        self.gross = gross
    }
}

/// An invoice's amounts: per line, then the sums of the lines (so the totals are exactly what the lines show: the tax
/// is rounded per line, never again on the total), and the tax per rate for the tax summary.
public struct InvoiceTotals: Hashable, Sendable, Codable {
    public var lines: [LineTotals]
    public var net: Int64
    public var tax: Int64
    public var gross: Int64
    /// Net and tax per rate, by rate ascending.
    public var byRate: [RateTotal]

    public struct RateTotal: Hashable, Sendable, Codable {
        public var rate: TaxRate
        public var net: Int64
        public var tax: Int64
    }

    /// The rounding rule, as the invoice states it.
    public static let roundingRule = "Tax is worked out on each line and rounded to the nearest minor unit (a half rounds up); totals are the sums of the lines."

    public static let maximumQuantity = 1_000
    public static let maximumDescription = 200
    /// 10 million major units of a two-digit currency: far above any clinic sale, far below any overflow.
    public static let maximumUnitPrice: Int64 = 1_000_000_000

    /// The totals of `lines`, with every problem of them named by its path (`lines[2].quantity`).
    public init(_ lines: [InvoiceLine], pricesIncludeTax: Bool) throws {
        var issues: [FieldIssue] = []
        if lines.isEmpty { issues.append(FieldIssue(path: "lines", problem: "an invoice needs at least one line")) }
        for (i, line) in lines.enumerated() {
            let words = line.description.trimmingCharacters(in: .whitespaces)
            if words.isEmpty || words.count > Self.maximumDescription {
                issues.append(FieldIssue(path: "lines[\(i)].description", problem: "is required, at most \(Self.maximumDescription) characters"))
            }
            if !(1...Self.maximumQuantity).contains(line.quantity) {
                issues.append(FieldIssue(path: "lines[\(i)].quantity", problem: "must be a whole number from 1 to \(Self.maximumQuantity)"))
            }
            if !(0...Self.maximumUnitPrice).contains(line.unitPrice) {
                issues.append(FieldIssue(path: "lines[\(i)].unitPrice", problem: "must be from 0 to \(Self.maximumUnitPrice) minor units"))
            }
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        var totals: [LineTotals] = []
        for line in lines {
            let amount = try MoneyMath.multiply(line.unitPrice, Int64(line.quantity))
            if pricesIncludeTax {
                let tax = try MoneyMath.tax(inGross: amount, line.taxRate)
                totals.append(LineTotals(net: amount - tax, tax: tax, gross: amount))
            } else {
                let tax = try MoneyMath.tax(onNet: amount, line.taxRate)
                totals.append(LineTotals(net: amount, tax: tax, gross: try MoneyMath.add(amount, tax)))
            }
        }
        self.lines = totals
        net = totals.map(\.net).reduce(0, +)
        tax = totals.map(\.tax).reduce(0, +)
        gross = totals.map(\.gross).reduce(0, +)
        var rates: [TaxRate: RateTotal] = [:]
        for (line, total) in zip(lines, totals) {
            rates[line.taxRate, default: RateTotal(rate: line.taxRate, net: 0, tax: 0)].net += total.net
            rates[line.taxRate, default: RateTotal(rate: line.taxRate, net: 0, tax: 0)].tax += total.tax
        }
        byRate = rates.values.sorted { $0.rate < $1.rate }
    }

    /// A refund of `amount` (gross, minor units) against these totals, less what earlier credit notes refunded: split
    /// over the lines in proportion to what is left of each, each line's part split into net and tax in that line's
    /// proportion — so a full refund gives back exactly every line, and partial ones never more than was paid per line.
    public func refund(_ amount: Int64, alreadyRefunded earlier: [LineTotals]) throws -> [LineTotals] {
        let left = lines.indices.map { i in
            LineTotals(net: lines[i].net - (earlier.indices.contains(i) ? earlier[i].net : 0),
                       tax: lines[i].tax - (earlier.indices.contains(i) ? earlier[i].tax : 0),
                       gross: lines[i].gross - (earlier.indices.contains(i) ? earlier[i].gross : 0))
        }
        let refundable = left.map(\.gross).reduce(0, +)
        guard amount > 0 else { throw InvalidInput(path: "amount", problem: "must be more than 0") }
        guard amount <= refundable else {
            throw InvalidInput(path: "amount", problem: "is more than the \(refundable) minor units left to refund on this invoice")
        }
        let grossParts = try MoneyMath.allocate(amount, by: left.map(\.gross))
        return try zip(left, grossParts).map { line, gross in
            guard line.gross > 0 else { return LineTotals(net: 0, tax: 0, gross: 0) }
            // The last minor units of a line go back exactly as they were charged.
            let tax = gross == line.gross ? line.tax : MoneyMath.divide(try MoneyMath.multiply(gross, line.tax), by: line.gross)
            return LineTotals(net: gross - tax, tax: tax, gross: gross)
        }
    }
}
