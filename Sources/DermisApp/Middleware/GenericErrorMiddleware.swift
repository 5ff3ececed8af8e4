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
            let response = Response(status: status)
            if request.url.path.hasPrefix("/api/") {
                try response.content.encode(["error": ["code": status.reasonPhrase, "message": message]], as: .json)
            } else {
                response.headers.contentType = .plainText
                response.body = .init(string: "\(status.code) \(status.reasonPhrase)\n\(message)\n")
            }
            return response
        }
    }
}
