import Vapor

/// Refuses abusive Range headers (docs/SECURITY.md R18): more than a few ranges, or numbers no file could need.
struct RequestLimitsMiddleware: AsyncMiddleware {
    static let maximumRanges = 8
    static let maximumRangeHeaderLength = 200

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        if let range = request.headers.first(name: .range) {
            let parts = range.split(separator: ",")
            let numbers = range.split(whereSeparator: { !$0.isNumber })
            if range.count > Self.maximumRangeHeaderLength || parts.count > Self.maximumRanges || numbers.contains(where: { $0.count > 15 }) {
                throw Abort(.rangeNotSatisfiable, reason: "The Range header asks for too much.")
            }
        }
        return try await next.respond(to: request)
    }
}
