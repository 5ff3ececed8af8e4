import Fluent
import Vapor

/// Sessions and API tokens: issue, resolve (enforcing idle and absolute timeouts with the injected clock), end.
enum Sessions {
    static func cookieName(secure: Bool) -> String { secure ? "__Host-dermis_session" : "dermis_session" }

    /// Starts a new session (always a new id: no fixation) and sets its cookie on `response`.
    static func start(for user: StaffUser, stage: SessionStage, on request: Request, response: Response) async throws {
        let token = Secrets.token()
        let now = request.dermis.clock.now()
        let session = WebSession(tokenHash: Secrets.digest(token), userID: try user.requireID(), stage: stage, at: now)
        try await Writes.transaction(request.db) { db in try await session.create(on: db) }
        setCookie(token, on: response, request: request)
    }

    static func setCookie(_ value: String, on response: Response, request: Request, expire: Bool = false) {
        let secure = request.dermis.settings.secureCookies
        response.cookies[cookieName(secure: secure)] = HTTPCookies.Value(
            string: value, expires: expire ? Date(timeIntervalSince1970: 0) : nil, maxAge: expire ? 0 : nil,
            path: "/", isSecure: secure, isHTTPOnly: true, sameSite: .lax)
    }

    /// The session behind the request's cookie, if it is alive; a dead one is deleted.
    static func session(of request: Request) async throws -> WebSession? {
        let name = cookieName(secure: request.dermis.settings.secureCookies)
        guard let token = request.cookies[name]?.string, !token.isEmpty else { return nil }
        guard let session = try await WebSession.query(on: request.db).filter(\.$tokenHash == Secrets.digest(token)).first() else {
            return nil
        }
        let settings = request.dermis.settings
        let now = request.dermis.clock.now()
        if now.timeIntervalSince(session.lastSeenAt) > settings.idleTimeout
            || now.timeIntervalSince(session.createdAt) > settings.absoluteTimeout {
            try await Writes.transaction(request.db) { db in try await session.delete(on: db) }
            return nil
        }
        // Refresh the idle timer, at most once a minute so reads stay cheap.
        if now.timeIntervalSince(session.lastSeenAt) >= 60 {
            session.lastSeenAt = now
            try await Writes.transaction(request.db) { db in try await session.save(on: db) }
        }
        return session
    }

    static func principal(forCookieOf request: Request) async throws -> Principal? {
        guard let session = try await session(of: request) else { return nil }
        guard let user = try await StaffUser.find(session.$user.id, on: request.db), user.active else {
            try await Writes.transaction(request.db) { db in try await session.delete(on: db) }
            return nil
        }
        return try Principal(user, sessionID: session.requireID(), stage: SessionStage(rawValue: session.stage) ?? .totp)
    }

    static func principal(forToken token: String, on request: Request) async throws -> Principal? {
        let now = request.dermis.clock.now()
        guard let stored = try await APIToken.query(on: request.db).filter(\.$tokenHash == Secrets.digest(token)).first(),
              stored.revokedAt == nil, stored.expiresAt > now,
              let user = try await StaffUser.find(stored.$user.id, on: request.db), user.active else { return nil }
        return try Principal(user, sessionID: nil, stage: .full)
    }

    /// Ends every session and revokes every token of a user (sign-out everywhere, deactivation).
    static func endAll(for userID: UUID, on db: any Database, at now: Date) async throws {
        try await Writes.transaction(db) { db in
            try await WebSession.query(on: db).filter(\.$user.$id == userID).delete()
            try await APIToken.query(on: db).filter(\.$user.$id == userID).filter(\.$revokedAt == nil).set(\.$revokedAt, to: now).update()
        }
    }

    /// Issues an API token; the plain token is returned once and never stored.
    static func issueToken(for userID: UUID, name: String, days: Int, on db: any Database, at now: Date) async throws -> String {
        let token = Secrets.token()
        let stored = APIToken(userID: userID, name: name, tokenHash: Secrets.digest(token), createdAt: now,
                              expiresAt: now.addingTimeInterval(Double(days) * 86400))
        try await Writes.transaction(db) { db in try await stored.create(on: db) }
        return token
    }
}

extension Principal {
    init(_ user: StaffUser, sessionID: UUID?, stage: SessionStage) throws {
        self.init(userID: try user.requireID(), clinicID: user.$clinic.id, email: user.email, name: user.name,
                  role: user.staffRole, maxDepthMm: user.maxDepthMm, sessionID: sessionID, stage: stage)
    }
}
