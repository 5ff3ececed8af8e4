import Foundation

/// A FHIR JSON value: resources are built as literals and written with their keys in the order given (FHIR's own
/// examples' order, which people read), nil members left out.
indirect enum FHIRValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case decimal(Double)
    case bool(Bool)
    case array([FHIRValue])
    case object([(String, FHIRValue)])
    /// JSON null (only ever read, never written by Dermis).
    case null

    static func == (lhs: FHIRValue, rhs: FHIRValue) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.int(a), .int(b)): a == b
        case let (.decimal(a), .decimal(b)): a == b
        case let (.bool(a), .bool(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.object(a), .object(b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.null, .null): true
        default: false
        }
    }

    /// A member of an object.
    subscript(key: String) -> FHIRValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// An element of an array.
    subscript(index: Int) -> FHIRValue? {
        guard case let .array(items) = self, items.indices.contains(index) else { return nil }
        return items[index]
    }

    var stringValue: String? { if case let .string(s) = self { s } else { nil } }
    var arrayValue: [FHIRValue]? { if case let .array(a) = self { a } else { nil } }
    var isObject: Bool { if case .object = self { true } else { false } }

    /// This object with `key` set (replaced in place, or added at the end).
    func setting(_ key: String, _ value: FHIRValue) -> FHIRValue {
        guard case var .object(members) = self else { return self }
        if let index = members.firstIndex(where: { $0.0 == key }) { members[index].1 = value } else { members.append((key, value)) }
        return .object(members)
    }

    /// An array, or nil when empty (FHIR has no empty arrays).
    static func list(_ items: [FHIRValue]) -> FHIRValue? { items.isEmpty ? nil : .array(items) }

    /// A FHIR instant: UTC with milliseconds.
    static func instant(_ date: Date) -> FHIRValue { .string(FHIRTime.instant(date)) }

    // MARK: Writing

    var json: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case let .string(s): Self.quote(s, into: &out)
        case let .int(i): out += String(i)
        case let .decimal(d):
            // FHIR decimals keep their precision; a whole number still reads as 2.0 is not required, 2 is fine.
            out += d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : String(d)
        case let .bool(b): out += b ? "true" : "false"
        case .null: out += "null"
        case let .array(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case let .object(members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += "\\u" + String(format: "%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    // MARK: Reading

    /// Parses a request body. Malformed JSON is an error saying where it broke.
    static func parse(_ data: Data) throws -> FHIRValue {
        do {
            return try JSONDecoder().decode(FHIRValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
            throw FHIRError(.badRequest, code: "invalid", "The body is not valid JSON: \(detail)")
        }
    }
}

extension FHIRValue: Decodable {
    private struct MemberKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        if let object = try? decoder.container(keyedBy: MemberKey.self) {
            self = .object(try object.allKeys.sorted { $0.stringValue < $1.stringValue }.map { ($0.stringValue, try object.decode(FHIRValue.self, forKey: $0)) })
        } else if var array = try? decoder.unkeyedContainer() {
            var items: [FHIRValue] = []
            while !array.isAtEnd { items.append(try array.decode(FHIRValue.self)) }
            self = .array(items)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() { self = .null }
            else if let b = try? single.decode(Bool.self) { self = .bool(b) }
            else if let i = try? single.decode(Int.self) { self = .int(i) }
            else if let d = try? single.decode(Double.self) { self = .decimal(d) }
            else { self = .string(try single.decode(String.self)) }
        }
    }
}

extension FHIRValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral {
    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(floatLiteral value: Double) { self = .decimal(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    typealias Key = String
    typealias Value = FHIRValue?
    typealias ArrayLiteralElement = FHIRValue
    init(arrayLiteral elements: FHIRValue...) { self = .array(elements) }
    /// An object; members whose value is nil are left out.
    init(dictionaryLiteral elements: (String, FHIRValue?)...) {
        self = .object(elements.compactMap { key, value in value.map { (key, $0) } })
    }
}

/// FHIR's date and time forms.
enum FHIRTime {
    static func instant(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// A FHIR dateTime or instant with a zone (seconds and fractions optional), or nil.
    static func dateTime(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: .iso8601) { return date }
        // hh:mm with a zone, no seconds (FHIR search allows it).
        if text.count >= 16, let date = try? Date(String(text.prefix(16)) + ":00" + text.dropFirst(16), strategy: .iso8601) { return date }
        return nil
    }
}
