import Foundation

/// One problem with one field of some input: `path` is a JSON path (`medications[0].lastDose`).
public struct FieldIssue: Hashable, Sendable, Codable, CustomStringConvertible {
    public let path: String
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}

/// Input that cannot be used, with every problem found and where it is.
public struct InvalidInput: Error, Sendable, CustomStringConvertible {
    public let issues: [FieldIssue]

    public init(_ issues: [FieldIssue]) {
        precondition(!issues.isEmpty, "InvalidInput needs at least one issue")
        self.issues = issues
    }

    public init(path: String, problem: String) {
        self.init([FieldIssue(path: path, problem: problem)])
    }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// Collects field issues while validating, so one pass reports them all.
struct IssueCollector {
    private(set) var issues: [FieldIssue] = []

    mutating func add(_ path: String, _ problem: String) {
        issues.append(FieldIssue(path: path, problem: problem))
    }

    /// Adds an "unknown id" issue listing the valid ids, when `value` is not one of them.
    mutating func requireKnown(_ value: String, in valid: [String], kind: String, at path: String) {
        if !valid.contains(value) {
            add(path, "unknown \(kind) '\(value)'; valid \(kind)s: \(valid.joined(separator: ", "))")
        }
    }

    func throwIfAny() throws {
        if !issues.isEmpty { throw InvalidInput(issues) }
    }
}

/// Decodes JSON into `T`, turning decoding errors into field issues with JSON paths.
public func decodeInput<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    do {
        let decoder = JSONDecoder()
        // Times are ISO 8601 with a zone (2026-12-01T10:00:00Z, 2026-12-01T10:00:00.250+01:00), as the API returns them.
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            if let date = (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))) {
                return date
            }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "expected a time in ISO 8601 with its zone, such as 2026-12-01T10:00:00Z, not '\(text)'"))
        }
        return try decoder.decode(type, from: data)
    } catch let error as DecodingError {
        throw InvalidInput([error.fieldIssue])
    }
}

/// Renders a coding path as a JSON path: `medications[0].lastDose`.
func jsonPath(_ codingPath: [any CodingKey]) -> String {
    var path = ""
    for key in codingPath {
        if let index = key.intValue {
            path += "[\(index)]"
        } else {
            path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
        }
    }
    return path
}

extension DecodingError {
    /// The field and the problem, in words a person can act on.
    public var fieldIssue: FieldIssue {
        switch self {
        case let .keyNotFound(key, context):
            return FieldIssue(path: jsonPath(context.codingPath + [key]), problem: "is required but missing")
        case let .typeMismatch(type, context):
            return FieldIssue(path: jsonPath(context.codingPath), problem: "must be \(Self.describe(type))")
        case let .valueNotFound(type, context):
            return FieldIssue(path: jsonPath(context.codingPath), problem: "must be \(Self.describe(type)), not null")
        case let .dataCorrupted(context):
            if context.codingPath.isEmpty {
                return FieldIssue(path: "", problem: "the input is not valid JSON")
            }
            return FieldIssue(path: jsonPath(context.codingPath), problem: context.debugDescription)
        @unknown default:
            return FieldIssue(path: "", problem: "the input could not be read")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is CalendarDate.Type: return "a date (YYYY-MM-DD)"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a \(name)"
        }
    }
}
