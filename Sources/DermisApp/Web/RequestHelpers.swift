import DermisCore
import Foundation
import Vapor

/// What handlers read from a request: path ids, the version an edit starts from, a JSON body with errors that name the field.
extension Request {
    /// A UUID path parameter; a missing or malformed one is simply not found.
    func uuidParameter(_ name: String, notFound reason: String = "Not found.") throws -> UUID {
        guard let id = (parameters.get(name) as String?).flatMap(UUID.init(uuidString:)) else { throw Abort(.notFound, reason: reason) }
        return id
    }

    /// The query's values named `name`, in order. A query string that cannot be read at all (a stray `%`) is a 422
    /// naming `query`: ignoring it would answer as if no parameter had been given.
    func queryValues(_ name: String) throws -> [URLQueryItem] {
        guard let query = url.query else { return [] }
        guard let items = URLComponents(string: "?" + query)?.queryItems else {
            throw InvalidInput(path: "query", problem: "is not a readable query string")
        }
        return items.filter { $0.name == name }
    }

    /// An optional query value; present but not a `T` (`archived=maybe`, `grid=ten`) is a 422 naming it, not ignored.
    func optionalQuery<T: Decodable & LosslessStringConvertible>(_ type: T.Type, _ name: String) throws -> T? {
        let values = try queryValues(name)
        guard !values.isEmpty else { return nil }
        guard values.count == 1, let text = values[0].value, let value = T(text) else {
            throw InvalidInput(path: name, problem: T.self == Bool.self ? "must be true or false, once" : "must be a whole number, once")
        }
        return value
    }

    /// The `:patientID` path parameter.
    func patientID() throws -> UUID { try uuidParameter("patientID", notFound: "No such patient.") }

    /// The patient of the path, in the caller's clinic; another clinic's patient is not found.
    func patient() async throws -> Patient {
        try await PatientRegistry(db: db, clinicID: try staff().clinicID).find(try patientID())
    }

    /// The version an edit starts from, from If-Match (`W/"3"`, `"3"` or `3`); required.
    func ifMatchVersion() throws -> Int {
        guard let header = headers.first(name: .ifMatch) else {
            throw Abort(.preconditionRequired, reason: "Send If-Match with the version you read (its ETag).")
        }
        guard let version = Self.version(inTag: header) else {
            throw Abort(.badRequest, reason: "If-Match must be a version such as W/\"3\".")
        }
        return version
    }

    /// The version an entity tag names: `W/"3"`, `"3"` or a bare `3` (the JSON API's If-Match, FHIR's If-Match and
    /// If-None-Match). Generated clients may percent-encode it as a URI value (`W%2F%223%22`).
    static func version(inTag header: String) -> Int? {
        let text = header.contains("%") ? (header.removingPercentEncoding ?? header) : header
        return Int(text.replacingOccurrences(of: "W/", with: "").trimmingCharacters(in: CharacterSet(charactersIn: "\" ")))
    }

    /// Decodes a JSON body with errors that name the field (JSON path).
    func decodeJSON<T: Decodable>(_ type: T.Type) throws -> T {
        guard let buffer = body.data else { throw InvalidInput(path: "", problem: "the request has no JSON body") }
        return try decodeInput(type, from: Data(buffer: buffer))
    }

    /// The id a client made for the record its POST creates (`"id"` in the JSON body), if it sent one. A client that
    /// lost the answer sends the same request again: the record is then found, not made twice (docs/CONTRACT.md).
    func clientMadeID() throws -> UUID? {
        struct Body: Decodable { let id: String? }
        guard let text = try decodeJSON(Body.self).id else { return nil }
        guard let id = UUID(uuidString: text) else {
            throw InvalidInput(path: "id", problem: "must be a UUID the client made (e.g. \(UUID().uuidString.lowercased())), or left out")
        }
        return id
    }
}

extension InvalidInput: AbortError {
    public var status: HTTPResponseStatus { .unprocessableEntity }
    public var reason: String { description }
}

extension DomainError: AbortError {
    var status: HTTPResponseStatus {
        switch self {
        case .notFound: .notFound
        case .conflict: .conflict
        }
    }

    var reason: String {
        switch self {
        case let .notFound(reason), let .conflict(reason): reason
        }
    }
}
