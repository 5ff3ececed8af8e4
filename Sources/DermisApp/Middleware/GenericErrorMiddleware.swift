import DermisCore
import Vapor

/// Turns errors into responses: a 4xx keeps its reason (it is about the request), a 5xx says nothing
/// but that something went wrong; the detail goes to the log, which never receives request bodies.
struct GenericErrorMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        do {
            return try await next.respond(to: request)
        } catch {
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
