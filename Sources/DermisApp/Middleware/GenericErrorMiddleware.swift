import DermisCore
import Vapor

/// Turns errors into responses: a 4xx keeps its reason (it is about the request), a 5xx says nothing
/// but that something went wrong; the detail goes to the log, which never receives request bodies.
struct GenericErrorMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        do {
            return try await next.respond(to: request)
        } catch {
            var error = error
            // A path that exists with other methods: 405 with Allow (RFC 9110 §15.5.6), not 404 — also when a
            // parameter route caught it (`PUT /api/v1/patients/import` is not a patient called "import").
            if (error as? any AbortError)?.status == .notFound,
               let allowed = MethodsAllowed.methods(for: request.url.path, in: request.application.routes),
               !allowed.contains(request.method.rawValue) {
                error = Abort(.methodNotAllowed, headers: ["Allow": allowed.joined(separator: ", ")],
                              reason: "\(request.method) is not allowed here; use \(allowed.joined(separator: " or ")).")
            }
            let status = (error as? any AbortError)?.status ?? .internalServerError
            let message: String
            if status.code >= 500 {
                request.logger.error("Request failed: \(String(reflecting: type(of: error))): \(error)")
                message = "Something went wrong. The error has been logged."
            } else {
                message = (error as? any AbortError)?.reason ?? status.reasonPhrase
            }
            if request.isFHIR { return FHIRError.response(for: error, status: status, message: message) }
            let response = Response(status: status, headers: (error as? any AbortError)?.headers ?? [:])
            if request.isAPI {
                let field = (error as? InvalidInput)?.issues.first?.path
                let message = (error as? InvalidInput)?.issues.first?.problem ?? message
                try response.content.encode(APIError(error: .init(code: Self.code(for: status), message: message, field: field)), as: .json)
            } else {
                response.headers.contentType = .plainText
                response.body = .init(string: "\(status.code) \(status.reasonPhrase)\n\(message)\n")
            }
            return response
        }
    }

    /// `{"error": {"code": "…", "message": "…", "field": "…"}}` (docs/CONTRACT.md).
    struct APIError: Content {
        struct Body: Codable {
            let code: String
            let message: String
            let field: String?
        }
        let error: Body
    }

    static func code(for status: HTTPResponseStatus) -> String {
        status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "-")
    }
}

/// The methods the most specific routes for a path serve (the routes whose fixed segments match the most), or nil
/// when no route has the path at all.
enum MethodsAllowed {
    static func methods(for path: String, in routes: Routes) -> [String]? {
        let segments = path.split(separator: "/").map(String.init)
        var best = -1
        var methods: [String] = []
        for route in routes.all where route.path.count == segments.count {
            var constants = 0
            let matches = zip(route.path, segments).allSatisfy { component, segment in
                switch component {
                case let .constant(text):
                    constants += 1
                    return text == segment
                case .parameter, .anything, .catchall: return true
                }
            }
            guard matches, constants >= best else { continue }
            if constants > best { best = constants; methods = [] }
            if !methods.contains(route.method.rawValue) { methods.append(route.method.rawValue) }
        }
        return methods.isEmpty ? nil : methods.sorted()
    }
}
