import DermisCore
import Fluent
import Vapor

/// The signed-in user's own settings: the authenticator (TOTP) and API tokens.
struct AccountController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let routes = routes.grouped(UnitOfWorkMiddleware())
        routes.get("account", use: show).access(.staff(AccessRule.anyStaff))
        routes.get("account", "totp", use: totpForm).access(.signingIn)
        routes.post("account", "totp", use: enableTOTP).access(.signingIn)
        routes.post("account", "tokens", use: createToken).access(.staff(AccessRule.anyStaff))
        routes.post("account", "tokens", ":tokenID", "revoke", use: revokeToken).access(.staff(AccessRule.anyStaff))
    }

    struct TokenRow: Encodable {
        let id: UUID
        let name: String
        let created: String
        let expires: String
        let state: String
    }

    struct AccountPage: Encodable {
        let page: PageHeader
        let name: String
        let email: String
        let role: String
        let totpEnabled: Bool
        let tokens: [TokenRow]
        let newToken: String?
        let errors: [ErrorLine]
    }

    func show(req: Request) async throws -> View {
        try await render(req, newToken: nil, errors: [])
    }

    private func render(_ req: Request, newToken: String?, errors: [ErrorLine]) async throws -> View {
        let staff = try req.staff()
        guard let user = try await StaffUser.find(staff.userID, on: req.db) else { throw Abort(.unauthorized) }
        let now = req.dermis.clock.now()
        let tokens = try await APIToken.query(on: req.db).filter(\.$user.$id == staff.userID).sort(\.$createdAt, .descending).all()
        let rows = try tokens.map { token in
            TokenRow(id: try token.requireID(), name: token.name, created: AuditLog.isoDay(token.createdAt),
                     expires: AuditLog.isoDay(token.expiresAt),
                     state: token.revokedAt != nil ? "revoked" : (token.expiresAt <= now ? "expired" : "active"))
        }
        return try await req.view.render("account", AccountPage(
            page: try await PageHeader(req, title: "Your account"), name: user.name, email: user.email, role: user.staffRole.displayName,
            totpEnabled: user.totpEnabled, tokens: rows, newToken: newToken, errors: errors))
    }

    struct TOTPPage: Encodable {
        let page: PageHeader
        let enabled: Bool
        let required: Bool
        let secret: String?
        let uri: String?
        let recoveryCodes: [String]
        let error: String?
    }

    func totpForm(req: Request) async throws -> View {
        guard let principal = req.principal, principal.stage != .totp,
              let user = try await StaffUser.find(principal.userID, on: req.db) else { throw Abort(.unauthorized) }
        if user.totpEnabled {
            return try await req.view.render("totp", TOTPPage(page: try await PageHeader(req, title: "AuthenticatorApp"), enabled: true,
                                                              required: user.mustUseTOTP, secret: nil, uri: nil, recoveryCodes: [], error: nil))
        }
        // A fresh secret each time the page is opened; it travels in the form and is stored only once a code from it
        // checks out (a GET changes nothing).
        return try await enrolPage(req, user: user, totp: AuthenticatorApp.generate(), error: nil)
    }

    private func enrolPage(_ req: Request, user: StaffUser, totp: AuthenticatorApp, error: String?) async throws -> View {
        try await req.view.render("totp", TOTPPage(
            page: try await PageHeader(req, title: "AuthenticatorApp"), enabled: false, required: user.mustUseTOTP,
            secret: totp.base32, uri: totp.provisioningURI(account: user.email, issuer: "Dermis"), recoveryCodes: [], error: error))
    }

    struct CodeForm: Content {
        var code: String?
        var secret: String?
    }

    func enableTOTP(req: Request) async throws -> Response {
        guard let principal = req.principal, principal.stage != .totp,
              let user = try await StaffUser.find(principal.userID, on: req.db), !user.totpEnabled else { return req.redirect(to: "/account") }
        let form = try req.content.decode(CodeForm.self)
        guard let totp = form.secret.flatMap(AuthenticatorApp.init(base32:)), totp.secret.count >= 16 else {
            throw Abort(.badRequest, reason: "The authenticator key is missing; open the page again.")
        }
        guard totp.verify(form.code ?? "", at: req.dermis.clock.now()) else {
            return try await enrolPage(req, user: user, totp: totp, error: "That code is not right; check the time on your phone and try the next one.").response(.unprocessableEntity, for: req)
        }
        try user.setAuthenticator(totp, req.dermis.secretBox)
        try await user.save(on: req.db)
        let codes = try await SecondFactor.newRecoveryCodes(for: user.requireID(), on: req.db)
        try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
        let page = TOTPPage(page: try await PageHeader(req, title: "AuthenticatorApp"), enabled: true, required: user.mustUseTOTP,
                            secret: nil, uri: nil, recoveryCodes: codes, error: nil)
        let response = try await req.view.render("totp", page).encodeResponse(for: req)
        if principal.stage == .enrol, let sessionID = principal.sessionID {
            // Enrolled: the half-signed-in session becomes a full one, under a new id.
            try await WebSession.query(on: req.db).filter(\.$id == sessionID).delete()
            try await Sessions.start(for: user, stage: .full, on: req, response: response)
        }
        return response
    }

    struct TokenForm: Content {
        var name: String?
        var days: String?
    }

    func createToken(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(TokenForm.self)
        let name = (form.name ?? "").trimmingCharacters(in: .whitespaces)
        let days = Int(form.days ?? "") ?? 0
        var errors: [ErrorLine] = []
        if name.isEmpty || name.count > 100 { errors.append(ErrorLine(field: "name", message: "Give the token a name (at most 100 characters).")) }
        if !(1...365).contains(days) { errors.append(ErrorLine(field: "days", message: "A token lasts 1 to 365 days.")) }
        if !errors.isEmpty {
            return try await render(req, newToken: nil, errors: errors).response(.unprocessableEntity, for: req)
        }
        let token = try await Sessions.issueToken(for: staff.userID, name: name, days: days, on: req.db, at: req.dermis.clock.now())
        return try await render(req, newToken: token, errors: []).encodeResponse(for: req)
    }

    func revokeToken(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("tokenID")
        guard let token = try await APIToken.query(on: req.db).filter(\.$id == id).filter(\.$user.$id == staff.userID).first() else {
            throw Abort(.notFound)
        }
        token.revokedAt = req.dermis.clock.now()
        try await token.save(on: req.db)
        return req.redirect(to: "/account", redirectType: .normal)
    }
}
