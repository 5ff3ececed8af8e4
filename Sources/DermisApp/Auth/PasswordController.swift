import DermisCore
import Fluent
import SQLKit
import Vapor

/// Passwords over their life: changing your own, one-time set-password links (new staff, an admin's reset, "forgot
/// password"). An admin never sees or sets anyone's password; a link is shown to the admin to pass on, and a forgotten
/// password's link goes by e-mail through the outbox.
struct PasswordController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        // Each change is its own unit of work below: a failed attempt must still be counted, so no request-wide one.
        routes.get("account", "password", use: changeForm).access(.staff(AccessRule.anyStaff))
        routes.post("account", "password", use: change).access(.staff(AccessRule.anyStaff))
        routes.get("password", ":token", use: linkForm).access(.open)
        routes.post("password", ":token", use: setFromLink).access(.open)
        routes.get("login", "forgot", use: forgotForm).access(.open)
        routes.post("login", "forgot", use: forgot).access(.open)
    }

    // MARK: Changing your own password

    struct ChangePage: Encodable {
        let page: PageHeader
        let errors: [ErrorLine]
        let changed: Bool
    }

    struct ChangeForm: Content {
        var current: String?
        var password: String?
        var confirm: String?
    }

    func changeForm(req: Request) async throws -> View {
        try await req.view.render("password-change", ChangePage(page: try await PageHeader(req, title: "Change your password"),
                                                                errors: [], changed: false))
    }

    /// The current password is required; the change ends the person's other sessions and every API token.
    func change(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(ChangeForm.self)
        guard let user = try await StaffUser.find(staff.userID, on: req.db) else { throw Abort(.unauthorized) }
        let limiter = SignInLimiter(req: req)
        try await limiter.refuseIfLimited(email: user.email)
        do {
            let current = form.current ?? ""
            guard current.utf8.count <= PasswordPolicy.maximumBytes,
                  try await StaffAccounts.verify(current, against: user.passwordHash, on: req.application) else {
                try await limiter.recordFailure(email: user.email)
                try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .denied)
                return try await req.view.render("password-change", ChangePage(
                    page: try await PageHeader(req, title: "Change your password"),
                    errors: [ErrorLine(field: "current", message: "current: is not your current password")], changed: false))
                    .response(.forbidden, for: req)
            }
            try await PasswordLinks.setPassword(of: user, to: form.password ?? "", confirm: form.confirm, on: req,
                                                keepingSession: staff.sessionID)
            return try await req.view.render("password-change", ChangePage(
                page: try await PageHeader(req, title: "Change your password"), errors: [], changed: true)).encodeResponse(for: req)
        } catch let invalid as InvalidInput {
            try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .invalid)
            return try await req.view.render("password-change", ChangePage(
                page: try await PageHeader(req, title: "Change your password"), errors: ErrorLine.list(invalid), changed: false))
                .response(.unprocessableEntity, for: req)
        }
    }

    // MARK: Set-password links

    struct LinkPage: Encodable {
        let page: PageHeader
        let email: String
        let welcome: Bool
        let errors: [ErrorLine]
    }

    struct LinkForm: Content {
        var password: String?
        var confirm: String?
    }

    func linkForm(req: Request) async throws -> Response {
        guard let (link, user) = try await PasswordLinks.find(req.parameters.get("token") ?? "", on: req) else {
            return try await Self.deadLink(req)
        }
        return try await req.view.render("password-set", LinkPage(
            page: try await PageHeader(req, title: "Set your password"), email: user.email, welcome: link.purpose == "welcome", errors: []))
            .encodeResponse(for: req)
    }

    /// Spends the link (once, even against two requests at the same moment), sets the password and ends every session
    /// and token the person had.
    func setFromLink(req: Request) async throws -> Response {
        let form = try req.content.decode(LinkForm.self)
        guard let (link, user) = try await PasswordLinks.find(req.parameters.get("token") ?? "", on: req) else {
            return try await Self.deadLink(req)
        }
        do {
            try await PasswordLinks.redeem(link, for: user, password: form.password ?? "", confirm: form.confirm, on: req)
            return req.redirect(to: "/login?password=set", redirectType: .normal)
        } catch is PasswordLinks.Spent {
            return try await Self.deadLink(req)
        } catch let invalid as InvalidInput {
            try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .invalid)
            return try await req.view.render("password-set", LinkPage(
                page: try await PageHeader(req, title: "Set your password"), email: user.email, welcome: link.purpose == "welcome",
                errors: ErrorLine.list(invalid))).response(.unprocessableEntity, for: req)
        }
    }

    private static func deadLink(_ req: Request) async throws -> Response {
        try await req.view.render("password-set-dead", ["page": try await PageHeader(req, title: "Link not valid")])
            .response(.notFound, for: req)
    }

    // MARK: Forgot password

    struct ForgotPage: Encodable {
        let page: PageHeader
        let sent: Bool
    }

    struct ForgotForm: Content {
        var email: String?
    }

    func forgotForm(req: Request) async throws -> View {
        try await req.view.render("password-forgot", ForgotPage(page: try await PageHeader(req, title: "Forgot your password"), sent: false))
    }

    /// The same answer whether or not the account exists; for an active account a link goes to its e-mail address.
    func forgot(req: Request) async throws -> Response {
        let form = try req.content.decode(ForgotForm.self)
        let email = (form.email ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let limiter = SignInLimiter(req: req)
        // Counted per address like failed sign-ins, under their own key so asking can never lock the account itself.
        let key = "(forgot) " + email
        try await limiter.refuseIfLimited(email: key)
        try await limiter.recordFailure(email: key)
        let user = email.count <= 254 ? try await StaffUser.query(on: req.db).filter(\.$email == email).first() : nil
        // Either way one unit of work that appends an audit row, so the reply takes about as long for an unknown address.
        try await Writes.transaction(req.db) { db in
            guard let user, user.active else {
                try await req.audit(.staffChange, objectType: "PasswordLink", outcome: .notFound)
                return
            }
            req.auditClinicID = user.$clinic.id
            // At most three asked-for links a day per account: asking cannot flood someone's mailbox. On PostgreSQL the
            // account's row is locked first, so asks at the same moment (on one server or several) count one by one;
            // SQLite runs one write transaction at a time already.
            if let sql = db as? any SQLDatabase, sql.dialect.name == "postgresql" {
                try await sql.raw("SELECT id FROM \(ident: StaffUser.schema) WHERE id = \(bind: try user.requireID()) FOR UPDATE").run()
            }
            let recent = try await PasswordLink.query(on: db).filter(\.$user.$id == user.requireID()).filter(\.$purpose == "forgot")
                .filter(\.$createdAt > req.dermis.clock.now().addingTimeInterval(-PasswordLink.lifetime)).count()
            guard recent < PasswordLinks.forgotPerDay else {
                try await req.audit(.staffChange, objectType: "PasswordLink", objectID: user.id?.uuidString, outcome: .denied)
                return
            }
            // Alongside any link an admin made: a stranger asking must not be able to void that one. (Made even without a
            // public address to put it in, so the daily cap counts every message.)
            let token = try await PasswordLinks.issue(for: user, purpose: "forgot", by: nil, replacing: false, on: req)
            // Only the configured public address: a Host header is the asker's to choose, and a link built from
            // it would send the victim's reset token to the asker's server.
            try await PasswordLinks.mail(req.dermis.settings.publicURL.map { "\($0)/password/\(token)" }, to: user, purpose: "forgot", on: req)
            try await req.audit(.staffChange, objectType: "PasswordLink", objectID: user.id?.uuidString, outcome: .success)
        }
        return try await req.view.render("password-forgot", ForgotPage(page: try await PageHeader(req, title: "Forgot your password"),
                                                                       sent: true)).encodeResponse(for: req)
    }
}

/// Issuing, finding and spending set-password links, and setting a password by any route.
enum PasswordLinks {
    struct Spent: Error {}

    /// "Forgot password" links one account may be sent in 24 hours.
    static let forgotPerDay = 3

    /// Queues a set-password link for the person (`welcome`, `reset` or `forgot`); a forgot-password message without a
    /// link (no public address to put in it) says to ask an admin.
    static func mail(_ link: String?, to user: StaffUser, purpose: String, on req: Request) async throws {
        let clinic = try await Clinic.require(user.$clinic.id, on: req.db)
        let body = switch purpose {
        case "forgot": """
            Hello \(user.name),

            Someone asked to set a new password for your Dermis account. To do so within 24 hours, \(link.map { "open:\n\($0)" }
                ?? "ask your clinic's Dermis admin for a set-password link (this server has no DERMIS_PUBLIC_URL to link to).")

            If it was not you, ignore this message: your password has not changed.
            """
        default: """
            Hello \(user.name),

            \(purpose == "welcome" ? "An account at \(clinic.name) was made for you." : "An admin at \(clinic.name) made you a link to set a new password.") \
            Choose your password within 24 hours; the link works once:
            \(link ?? "")
            """
        }
        let message = OutboxMessage(clinicID: try clinic.requireID(), recipient: user.email,
                                    subject: purpose == "welcome" ? "Your Dermis account at \(clinic.name)" : "Set a new Dermis password",
                                    body: body, kind: "password-link", at: req.dermis.clock.now())
        try await message.create(on: req.db)
    }

    /// A new link for `user` (with `replacing`, earlier unused ones are dropped); returns the token, shown or sent once,
    /// never stored.
    static func issue(for user: StaffUser, purpose: String, by creator: UUID?, replacing: Bool = true,
                      on req: Request) async throws -> String {
        let token = Secrets.token()
        let userID = try user.requireID()
        try await Writes.transaction(req.db) { db in
            if replacing { try await PasswordLink.query(on: db).filter(\.$user.$id == userID).filter(\.$usedAt == nil).delete() }
            try await PasswordLink(userID: userID, tokenHash: Secrets.digest(token), purpose: purpose, at: req.dermis.clock.now(),
                                   createdBy: creator).create(on: db)
        }
        return token
    }

    /// The link behind a token if it is unused, unexpired and its person active.
    static func find(_ token: String, on req: Request) async throws -> (PasswordLink, StaffUser)? {
        guard !token.isEmpty, token.count <= 100,
              let link = try await PasswordLink.query(on: req.db).filter(\.$tokenHash == Secrets.digest(token)).first(),
              link.usedAt == nil, link.expiresAt > req.dermis.clock.now(),
              let user = try await StaffUser.find(link.$user.id, on: req.db), user.active else { return nil }
        return (link, user)
    }

    static func redeem(_ link: PasswordLink, for user: StaffUser, password: String, confirm: String?, on req: Request) async throws {
        // bcrypt runs before the unit of work opens: no write waits on it.
        let digest = try await checkedDigest(password, confirm: confirm, for: user, on: req)
        try await Writes.transaction(req.db) { db in
            try await ConditionalUpdate(PasswordLink.self, id: try link.requireID(), on: db)
                .whereNull(\.$usedAt)
                .set(\.$usedAt, to: req.dermis.clock.now())
                .run(orThrow: Spent())
            try await store(digest, for: user, on: req, keepingSession: nil)
        }
    }

    /// Checks the new password against the policy, stores its hash and ends the person's sessions (all but
    /// `keepingSession`) and tokens, audited; all one unit of work.
    static func setPassword(of user: StaffUser, to password: String, confirm: String?, on req: Request,
                            keepingSession: UUID?) async throws {
        let digest = try await checkedDigest(password, confirm: confirm, for: user, on: req)
        try await store(digest, for: user, on: req, keepingSession: keepingSession)
    }

    /// The bcrypt hash of a new password that passes the policy; InvalidInput naming each problem otherwise.
    private static func checkedDigest(_ password: String, confirm: String?, for user: StaffUser, on req: Request) async throws -> String {
        var issues: [FieldIssue] = []
        if let problem = PasswordPolicy.problem(with: password) { issues.append(FieldIssue(path: "password", problem: problem)) }
        if let confirm, confirm != password { issues.append(FieldIssue(path: "confirm", problem: "does not match the new password")) }
        if password.lowercased() == user.email || password.lowercased() == user.name.lowercased() {
            issues.append(FieldIssue(path: "password", problem: "must not be your e-mail address or name"))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return try await StaffAccounts.hash(password, cost: req.dermis.settings.passwordCost, on: req.application)
    }

    private static func store(_ digest: String, for user: StaffUser, on req: Request, keepingSession: UUID?) async throws {
        let userID = try user.requireID()
        try await req.audited(.staffChange, objectType: "StaffUser", objectID: userID.uuidString) {
            try await StaffUser.query(on: req.db).filter(\.$id == userID).set(\.$passwordHash, to: digest).update()
            try await PasswordLink.query(on: req.db).filter(\.$user.$id == userID).filter(\.$usedAt == nil).delete()
            try await Sessions.endAll(for: userID, on: req.db, at: req.dermis.clock.now(), keeping: keepingSession)
        }
        user.passwordHash = digest
    }
}
