import Fluent
import SQLKit
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
        let secure = request.dermis.settings.usesSecureCookies
        response.cookies[cookieName(secure: secure)] = HTTPCookies.Value(
            string: value, expires: expire ? Date(timeIntervalSince1970: 0) : nil, maxAge: expire ? 0 : nil,
            path: "/", isSecure: secure, isHTTPOnly: true, sameSite: .lax)
    }

    /// The session behind the request's cookie, if it is alive, with its staff member: one query (the hot path of
    /// every page). A dead session, or one of a deactivated person, is deleted.
    static func principal(forCookieOf request: Request) async throws -> Principal? {
        let name = cookieName(secure: request.dermis.settings.usesSecureCookies)
        guard let token = request.cookies[name]?.string, !token.isEmpty else { return nil }
        let session = Names.session
        guard let row = try await StaffRow.query(request.db, from: WebSession.self, userColumn: session.user,
                                                 extra: [session.id, session.stage, session.createdAt, session.lastSeenAt],
                                                 where: session.tokenHash, equals: Secrets.digest(token)) else { return nil }
        let sessionID = try row.decode(session.id, as: UUID.self)
        let settings = request.dermis.settings
        let now = request.dermis.clock.now()
        let lastSeen = try row.decode(session.lastSeenAt, as: Date.self)
        let created = try row.decode(session.createdAt, as: Date.self)
        if now.timeIntervalSince(lastSeen) > settings.idleTimeout || now.timeIntervalSince(created) > settings.absoluteTimeout
            || !row.staff.active {
            try await Writes.transaction(request.db) { db in try await WebSession.query(on: db).filter(\.$id == sessionID).delete() }
            return nil
        }
        // Refresh the idle timer, at most once a minute so reads stay cheap.
        if now.timeIntervalSince(lastSeen) >= 60 {
            try await Writes.transaction(request.db) { db in
                try await WebSession.query(on: db).filter(\.$id == sessionID).set(\.$lastSeenAt, to: now).update()
            }
        }
        var stage = SessionStage(rawValue: try row.decode(session.stage, as: String.self)) ?? .totp
        // An admin acts as one only once an authenticator is enrolled (a promotion does not skip it).
        if stage == .full && row.staff.needsEnrolment { stage = .enrol }
        return row.staff.principal(sessionID: sessionID, stage: stage)
    }

    /// The staff member behind a bearer token that is neither revoked nor expired: one query. (Tokens are minted only by
    /// a fully signed-in session — for an admin, after the authenticator — or by the server's operator with
    /// `dermis create-token`; a role change revokes them all.)
    static func principal(forToken token: String, on request: Request) async throws -> Principal? {
        let column = Names.token
        guard let row = try await StaffRow.query(request.db, from: APIToken.self, userColumn: column.user,
                                                 extra: [column.expiresAt, column.revokedAt],
                                                 where: column.tokenHash, equals: Secrets.digest(token)),
              try row.decode(column.revokedAt, as: Date?.self) == nil,
              try row.decode(column.expiresAt, as: Date.self) > request.dermis.clock.now(),
              row.staff.active else { return nil }
        return row.staff.principal(sessionID: nil, stage: .full)
    }

    /// The columns the credential look-ups name, read once from the models' fields.
    private enum Names {
        struct Session {
            let id = Column<WebSession>.name(\._$id), user = Column<WebSession>.name(\.$user.$id)
            let tokenHash = Column<WebSession>.name(\.$tokenHash), stage = Column<WebSession>.name(\.$stage)
            let createdAt = Column<WebSession>.name(\.$createdAt), lastSeenAt = Column<WebSession>.name(\.$lastSeenAt)
        }

        struct Token {
            let user = Column<APIToken>.name(\.$user.$id), tokenHash = Column<APIToken>.name(\.$tokenHash)
            let expiresAt = Column<APIToken>.name(\.$expiresAt), revokedAt = Column<APIToken>.name(\.$revokedAt)
        }

        static let session = Session()
        static let token = Token()
        /// The staff member's columns, in the order `StaffRow` reads them (the id first).
        static let staff = [Column<StaffUser>.name(\._$id), Column<StaffUser>.name(\.$clinic.$id), Column<StaffUser>.name(\.$email),
                            Column<StaffUser>.name(\.$name), Column<StaffUser>.name(\.$role), Column<StaffUser>.name(\.$maxDepthMm),
                            Column<StaffUser>.name(\.$active), Column<StaffUser>.name(\.$totpEnabled)]
    }

    /// A credential's row joined with its staff member, read with SQLKit (no model reflection on every request).
    private struct StaffRow {
        struct Staff {
            let id: UUID
            let clinicID: UUID
            let email: String
            let name: String
            let role: String
            let maxDepthMm: Double?
            let active: Bool
            let totpEnabled: Bool

            /// An admin without an authenticator: no admin rights until one is enrolled.
            var needsEnrolment: Bool { role == StaffRole.admin.rawValue && !totpEnabled }

            func principal(sessionID: UUID?, stage: SessionStage) -> Principal {
                Principal(userID: id, clinicID: clinicID, email: email, name: name, role: StaffRole(rawValue: role) ?? .frontDesk,
                          maxDepthMm: maxDepthMm, sessionID: sessionID, stage: stage)
            }
        }

        let row: any SQLRow
        let staff: Staff

        func decode<T: Decodable>(_ column: String, as type: T.Type) throws -> T { try row.decode(column: column, as: T.self) }

        static func query<Credential: Model>(_ db: any Database, from credential: Credential.Type, userColumn: String, extra: [String],
                                             where column: String, equals value: String) async throws -> StaffRow? {
            guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
            var select = sql.select()
            for (index, name) in Names.staff.enumerated() {
                select = select.column(SQLAlias(SQLColumn(name, table: StaffUser.schema), as: "staff_\(index)"))
            }
            for name in extra { select = select.column(SQLColumn(name, table: Credential.schema)) }
            guard let row = try await select.from(Credential.schema)
                .join(StaffUser.schema, on: SQLColumn(userColumn, table: Credential.schema), .equal, SQLColumn(Names.staff[0], table: StaffUser.schema))
                .where(SQLColumn(column, table: Credential.schema), .equal, SQLBind(value))
                .limit(1).first() else { return nil }
            let staff = Staff(id: try row.decode(column: "staff_0", as: UUID.self), clinicID: try row.decode(column: "staff_1", as: UUID.self),
                              email: try row.decode(column: "staff_2", as: String.self), name: try row.decode(column: "staff_3", as: String.self),
                              role: try row.decode(column: "staff_4", as: String.self), maxDepthMm: try row.decode(column: "staff_5", as: Double?.self),
                              active: try row.decode(column: "staff_6", as: Bool.self), totpEnabled: try row.decode(column: "staff_7", as: Bool.self))
            return StaffRow(row: row, staff: staff)
        }
    }

    /// Ends every session and revokes every token of a user (sign-out everywhere, deactivation, a role or password
    /// change), except the session `keeping` (the person's own, when they change their password).
    static func endAll(for userID: UUID, on db: any Database, at now: Date, keeping: UUID? = nil) async throws {
        try await Writes.transaction(db) { db in
            var sessions = WebSession.query(on: db).filter(\.$user.$id == userID)
            if let keeping { sessions = sessions.filter(\.$id != keeping) }
            try await sessions.delete()
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
