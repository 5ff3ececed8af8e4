import Vapor

/// One line per request at `info`: method, the route's pattern (`/patients/:patientID`, never the path itself, which can
/// carry ids and tokens), status and time taken, with Vapor's `request-id` in the metadata; and the same into the
/// request metrics. The first middleware, so its time covers all the others.
struct RequestLogMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let started = ContinuousClock.now
        var status: HTTPStatus = .internalServerError
        defer {
            let elapsed = ContinuousClock.now - started
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            let route = Self.pattern(request)
            request.logger.info("\(request.method) \(route) \(status.code) \(String(format: "%.1f", ms)) ms")
            request.application.metrics.request(method: request.method, route: route, status: status, took: elapsed)
        }
        let response = try await next.respond(to: request)
        status = response.status
        return response
    }

    /// The matched route's pattern, or `(no route)`.
    static func pattern(_ request: Request) -> String {
        guard let route = request.route else { return "(no route)" }
        return "/" + route.path.map(\.description).joined(separator: "/")
    }
}
