import Fluent
import NIOConcurrencyHelpers
import Vapor

/// Refuses cross-site state changes (docs/SECURITY.md R5): on POST/PUT/PATCH/DELETE a browser's Sec-Fetch-Site must be
/// same-origin (or none), else its Origin must be this host. Bearer-token calls carry no cookie and are exempt.
struct CrossSiteRequestMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard ![.GET, .HEAD, .OPTIONS].contains(request.method), request.headers.bearerAuthorization == nil else {
            return try await next.respond(to: request)
        }
        // A machine call with no cookie carries no credential another site could borrow: it is simply unauthenticated
        // (401 from the access rule), as an API client expects. Pages keep the check (login forms, public booking).
        if request.isAPI, request.headers.first(name: .cookie) == nil { return try await next.respond(to: request) }
        if request.route?.allowsCrossSite == true { return try await next.respond(to: request) }
        if let site = request.headers.first(name: "Sec-Fetch-Site") {
            guard site == "same-origin" || site == "none" else { throw Abort(.forbidden, reason: "Cross-site request refused.") }
        } else if let origin = request.headers.first(name: .origin) {
            guard let host = request.headers.first(name: .host), URLComponents(string: origin).map(Self.hostAndPort) == host else {
                throw Abort(.forbidden, reason: "Cross-site request refused.")
            }
        } else {
            throw Abort(.forbidden, reason: "Request refused: the browser sent neither Origin nor Sec-Fetch-Site.")
        }
        return try await next.respond(to: request)
    }

    static func hostAndPort(_ url: URLComponents) -> String {
        (url.host ?? "") + (url.port.map { ":\($0)" } ?? "")
    }
}

/// Finds who is calling: a bearer token or the session cookie. Sets `req.principal`; refuses a bad token outright.
struct AuthenticationMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        if let bearer = request.headers.bearerAuthorization, request.route?.checksOwnBearer != true {
            guard let principal = try await Sessions.principal(forToken: bearer.token, on: request) else {
                throw Abort(.unauthorized, reason: "The API token is unknown, revoked or expired.")
            }
            request.principal = principal
        } else if let principal = try await Sessions.principal(forCookieOf: request) {
            request.principal = principal
        }
        return try await next.respond(to: request)
    }
}

/// Applies each route's `AccessRule`; a route with none is refused. On patient-data routes (`audits:` and patient
/// links) this is the one place that makes sure every request leaves an audit row (docs/SECURITY.md R9): a refusal
/// here, and any request whose handler wrote none — an unknown id, another clinic's id, bad input, a failure.
struct AccessMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard let route = request.route else { return try await next.respond(to: request) }
        guard let rule = route.accessRule else {
            request.logger.error("Route \(route.method) \(route.path.string) has no access rule; refused")
            throw Abort(.forbidden)
        }
        var audits: String?
        // The patient's pages (their sign-in too) never act for staff, whatever staff cookie the browser also holds: the
        // patient is the only actor there, and their clinic's audit chain the one written.
        if request.url.path == "/my" || request.url.path.hasPrefix("/my/") { request.principal = nil }
        switch rule {
        case .open:
            break
        case .firstRun:
            guard request.dermis.firstRunCode.isIssued, try await FirstRun.isOpen(on: request.db) else { throw Abort(.notFound) }
        case .patientLink:
            audits = "PatientLink"
            if let refusal = try await PatientLinks.authorize(request) { return refusal }
        case .patient:
            audits = "Patient"
            guard let portal = try await PortalSessions.principal(forCookieOf: request) else {
                try await request.audit(.access, objectType: "Patient", outcome: .denied)
                if request.method != .GET { throw Abort(.unauthorized, reason: request.dermis.patientText("session.ended")) }
                return request.redirect(to: "/my/sign-in")
            }
            request.portal = portal
            request.auditClinicID = portal.clinicID
        case .signingIn:
            guard request.principal?.sessionID != nil else {
                if request.method != .GET { throw Abort(.unauthorized) }
                return request.redirect(to: "/login")
            }
        case let .staff(roles, objectType):
            audits = objectType
            guard let principal = request.principal, principal.isFullySignedIn else {
                if let objectType { try await request.audit(.access, objectType: objectType, outcome: .denied) }
                if request.isAPI || request.method != .GET { throw Abort(.unauthorized) }
                let next = request.url.path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "/"
                return request.redirect(to: request.principal?.stage == .enrol ? "/account/totp" : "/login?next=\(next)")
            }
            guard roles.contains(principal.role) else {
                if let objectType { try await request.audit(.access, objectType: objectType, outcome: .denied) }
                throw Abort(.forbidden, reason: "Your role may not do this.")
            }
        }
        let response: Response
        do {
            response = try await next.respond(to: request)
        } catch {
            try await request.writePendingRefusals()
            if let audits, !request.hasAudited { try await request.audit(.access, objectType: audits, outcome: AuditOutcome(error)) }
            throw error
        }
        try await request.writePendingRefusals()
        if let audits, !request.hasAudited {
            let outcome: AuditOutcome = response.status.code < 400 ? .success : AuditOutcome(Abort(response.status))
            try await request.audit(.access, objectType: audits, outcome: outcome)
        }
        return response
    }
}

/// The one-time code the first-run page asks for. `dermis serve` issues it and prints it on its terminal while no admin
/// exists, so only someone who sees that terminal can create the first admin — wherever their browser is (no address test:
/// addresses can be forwarded). Only its digest is kept; it lives as long as the process.
final class FirstRunCode: Sendable {
    private let digest = NIOLockedValueBox<String?>(nil)

    var isIssued: Bool { digest.withLockedValue { $0 != nil } }

    /// A new code (replacing any earlier one): 16 characters from an unambiguous alphabet, grouped by four.
    func issue() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        let characters = (0..<16).map { _ in alphabet.randomElement()! }
        let code = stride(from: 0, to: 16, by: 4).map { String(characters[$0..<$0 + 4]) }.joined(separator: "-")
        digest.withLockedValue { $0 = Secrets.digest(Self.normalized(code)) }
        return code
    }

    /// Whether `code` is the issued one; case, spaces and dashes do not matter.
    func matches(_ code: String) -> Bool {
        let offered = Array(Secrets.digest(Self.normalized(code)).utf8)
        guard let stored = digest.withLockedValue({ $0 }) else { return false }
        // Digests of equal length, compared without an early exit.
        return zip(offered, Array(stored.utf8)).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    func retire() { digest.withLockedValue { $0 = nil } }

    private static func normalized(_ code: String) -> String {
        code.uppercased().filter { $0.isLetter || $0.isNumber }
    }
}

/// The first-run page lives only until the first admin exists.
enum FirstRun {
    static func isOpen(on db: any Database) async throws -> Bool {
        try await StaffUser.query(on: db).filter(\.$role == StaffRole.admin.rawValue).count() == 0
    }
}
