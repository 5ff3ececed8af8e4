import Vapor

/// Security headers on every response, errors included (docs/SECURITY.md R6).
struct SecurityHeadersMiddleware: AsyncMiddleware {
    static let contentSecurityPolicy = [
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
    ].joined(separator: "; ")

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        let response: Response
        do {
            response = try await next.respond(to: request)
        } catch {
            response = Response(status: (error as? any AbortError)?.status ?? .internalServerError)
            response.body = .init(string: "Something went wrong.")
        }
        let headers = [
            ("Content-Security-Policy", Self.contentSecurityPolicy),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
        ]
        for (name, value) in headers { response.headers.replaceOrAdd(name: name, value: value) }
        // Over HTTPS, browsers are told to come back only over HTTPS for a year (RFC 6797).
        if request.dermis.settings.servesHTTPS || request.dermis.settings.usesSecureCookies {
            response.headers.replaceOrAdd(name: "Strict-Transport-Security", value: "max-age=31536000; includeSubDomains")
        }
        // Static assets carry their own caching (StaticAssetsMiddleware); everything else is never stored.
        if response.headers.first(name: .eTag) == nil || !["/css/", "/js/", StaticAssets.prefix].contains(where: request.url.path.hasPrefix) {
            response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        }
        return response
    }
}
