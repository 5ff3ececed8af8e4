import Vapor

/// One line per request: method, the route's pattern (`/patients/:patientID`, never the path itself, which can carry
/// ids and tokens), status and time taken, with Vapor's `request-id` in the metadata; and the same into the request
/// metrics. A server error or a request slower than a second is logged at `warning`; every other at `debug`
/// (`LOG_LEVEL=debug`): a synchronous log write per request cost 16% of the lightest route's throughput, and the
/// metrics count every request anyway. The first stage, so its time covers all the others.
struct RequestLogMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let started = ContinuousClock.now
        var status: HTTPStatus = .internalServerError
        defer {
            let elapsed = ContinuousClock.now - started
            let ms = elapsed.seconds * 1000
            let route = Self.pattern(request)
            let level: Logger.Level = status.code >= 500 || ms >= Self.slowMilliseconds ? .warning : .debug
            request.logger.log(level: level, "\(request.method) \(route) \(status.code) \(String(format: "%.1f", ms)) ms")
            request.application.metrics.request(method: request.method, route: request.route, pattern: route, status: status, took: elapsed)
        }
        let response = try await next.respond(to: request)
        status = response.status
        return response
    }

    static let slowMilliseconds = 1000.0

    /// The matched route's pattern, or `(no route)`: written on each route once, at start (`notePatterns`).
    static func pattern(_ request: Request) -> String {
        guard let route = request.route else { return "(no route)" }
        return route.userInfo[patternKey] as? String ?? pattern(of: route)
    }

    static let patternKey = AnySendableHashable("dermis.pattern")

    static func pattern(of route: Route) -> String { "/" + route.path.map(\.description).joined(separator: "/") }

    /// Writes each route's pattern on it, before the server takes requests (routes are not changed after).
    static func notePatterns(_ routes: Routes) {
        for route in routes.all { route.userInfo[patternKey] = pattern(of: route) }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (for logs and gauges).
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
