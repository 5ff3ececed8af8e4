import DermisCore
import Fluent
import Vapor

/// Admin pages for staff: add, set role, credential and maximum depth, reset the authenticator, deactivate.
struct StaffAdminController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let routes = routes.grouped(UnitOfWorkMiddleware())
        let staff = routes.grouped("admin", "staff")
        let rule = AccessRule.staff(AccessRule.admins)
        staff.get(use: list).access(rule)
        staff.post(use: create).access(rule)
        staff.post(":staffID", use: update).access(rule)
        staff.post(":staffID", "reset-totp", use: resetTOTP).access(rule)
        staff.post(":staffID", "password-link", use: passwordLink).access(rule)
        staff.post(":staffID", "deactivate", use: deactivate).access(rule)
        staff.post(":staffID", "activate", use: activate).access(rule)
    }

    struct StaffRow: Encodable {
        let id: String
        let name: String
        let email: String
        let role: String
        let credential: String
        let maxDepth: String
        let totp: Bool
        let active: Bool
        let roles: [Option]
    }

    struct StaffPage: Encodable {
        let page: PageHeader
        let staff: [StaffRow]
        let roles: [Option]
        let errors: [ErrorLine]
        let created: CreatedStaff?
        let form: StaffForm
    }

    /// A set-password link, shown once to the admin to pass on (the admin never sees or sets the password).
    struct CreatedStaff: Encodable {
        let email: String
        let link: String
        let welcome: Bool
    }

    struct StaffForm: Content {
        var email: String?
        var name: String?
        var role: String?
        var credential: String?
        var maxDepthMm: String?
    }

    func list(req: Request) async throws -> View {
        try await render(req, errors: [], created: nil, form: StaffForm())
    }

    private func render(_ req: Request, errors: [ErrorLine], created: CreatedStaff?, form: StaffForm) async throws -> View {
        let admin = try req.staff()
        let users = try await StaffUser.query(on: req.db).filter(\.$clinic.$id == admin.clinicID).sort(\.$name).all()
        let rows = users.map { user in
            StaffRow(id: user.id?.uuidString ?? "", name: user.name, email: user.email, role: user.staffRole.displayName,
                     credential: user.credential ?? "", maxDepth: user.maxDepthMm.map(formatMillimetres) ?? "", totp: user.totpEnabled,
                     active: user.active, roles: StaffRole.allCases.map { Option(id: $0.rawValue, name: $0.displayName, selected: $0 == user.staffRole) })
        }
        return try await req.view.render("staff", StaffPage(
            page: try await PageHeader(req, title: "Staff"), staff: rows,
            roles: StaffRole.allCases.map { Option(id: $0.rawValue, name: $0.displayName, selected: $0.rawValue == (form.role ?? "practitioner")) },
            errors: errors, created: created, form: form))
    }

    /// A new staff member gets a one-time link to set their own password (24 hours), shown once to the admin to pass
    /// on; until it is used the account has no password anyone knows.
    func create(req: Request) async throws -> Response {
        let admin = try req.staff()
        let form = try req.content.decode(StaffForm.self)
        do {
            let role = try Self.role(form.role)
            let depth = try Self.depth(form.maxDepthMm)
            let user = try await StaffAccounts.create(
                .init(email: form.email ?? "", name: form.name ?? "", password: Secrets.token(), role: role,
                      credential: Self.blankToNil(form.credential), maxDepthMm: depth),
                clinicID: admin.clinicID, createdBy: admin.userID, on: req.application, db: req.db)
            let token = try await PasswordLinks.issue(for: user, purpose: "welcome", by: admin.userID, on: req)
            let link = FollowUpController.absoluteURL(req, "/password/\(token)")
            try await PasswordLinks.mail(link, to: user, purpose: "welcome", on: req)  // by e-mail too
            try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
            let created = CreatedStaff(email: user.email, link: link, welcome: true)
            return try await render(req, errors: [], created: created, form: StaffForm()).encodeResponse(for: req)
        } catch let invalid as InvalidInput {
            return try await render(req, errors: ErrorLine.list(invalid), created: nil, form: form)
                .response(.unprocessableEntity, for: req)
        }
    }

    func update(req: Request) async throws -> Response {
        let user = try await member(req)
        let form = try req.content.decode(StaffForm.self)
        do {
            let role = try Self.role(form.role)
            if user.id == (try req.staff()).userID && role != .admin {
                throw InvalidInput(path: "role", problem: "you cannot remove your own admin role")
            }
            let roleChanged = user.staffRole != role
            user.role = role.rawValue
            if let issue = TextLimits.issue(form.credential, "credential", max: TextLimits.short) { throw InvalidInput([issue]) }
            user.credential = Self.blankToNil(form.credential)
            user.maxDepthMm = try Self.depth(form.maxDepthMm)
            try await user.save(on: req.db)
            // A new role starts from a new sign-in: what was granted under the old one ends now.
            if roleChanged { try await Sessions.endAll(for: user.requireID(), on: req.db, at: req.dermis.clock.now()) }
            try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
            return req.redirect(to: "/admin/staff", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await render(req, errors: ErrorLine.list(invalid), created: nil,
                                            form: StaffForm()).response(.unprocessableEntity, for: req)
        }
    }

    func resetTOTP(req: Request) async throws -> Response {
        let user = try await member(req)
        try user.setAuthenticator(nil, req.dermis.secretBox)
        try await user.save(on: req.db)
        try await RecoveryCode.query(on: req.db).filter(\.$user.$id == user.requireID()).delete()
        try await Sessions.endAll(for: user.requireID(), on: req.db, at: req.dermis.clock.now())
        try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
        return req.redirect(to: "/admin/staff", redirectType: .normal)
    }

    /// A password reset: a new one-time link for the person (earlier unused ones stop working), shown once. Their current
    /// password keeps working until the link is used.
    func passwordLink(req: Request) async throws -> Response {
        let admin = try req.staff()
        let user = try await member(req)
        guard user.active else { throw Abort(.unprocessableEntity, reason: "Activate the account first.") }
        let token = try await PasswordLinks.issue(for: user, purpose: "reset", by: admin.userID, on: req)
        let link = FollowUpController.absoluteURL(req, "/password/\(token)")
        try await PasswordLinks.mail(link, to: user, purpose: "reset", on: req)
        try await req.audit(.staffChange, objectType: "PasswordLink", objectID: user.id?.uuidString, outcome: .success)
        let created = CreatedStaff(email: user.email, link: link, welcome: false)
        return try await render(req, errors: [], created: created, form: StaffForm()).encodeResponse(for: req)
    }

    /// Deactivation ends the person's sessions and tokens at once.
    func deactivate(req: Request) async throws -> Response {
        let user = try await member(req)
        guard user.id != (try req.staff()).userID else { throw Abort(.unprocessableEntity, reason: "You cannot deactivate yourself.") }
        user.active = false
        try await user.save(on: req.db)
        try await Sessions.endAll(for: user.requireID(), on: req.db, at: req.dermis.clock.now())
        // An unused set-password link must not come back to life if the account is activated again.
        try await PasswordLink.query(on: req.db).filter(\.$user.$id == user.requireID()).filter(\.$usedAt == nil).delete()
        try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
        return req.redirect(to: "/admin/staff", redirectType: .normal)
    }

    func activate(req: Request) async throws -> Response {
        let user = try await member(req)
        user.active = true
        try await user.save(on: req.db)
        try await req.audit(.staffChange, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
        return req.redirect(to: "/admin/staff", redirectType: .normal)
    }

    /// A staff member of the admin's own clinic; anyone else is not found.
    private func member(_ req: Request) async throws -> StaffUser {
        let admin = try req.staff()
        let id = try req.uuidParameter("staffID")
        guard let user = try await StaffUser.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == admin.clinicID).first() else {
            throw Abort(.notFound)
        }
        return user
    }

    static func role(_ text: String?) throws -> StaffRole {
        guard let role = StaffRole(rawValue: text ?? "") else {
            throw InvalidInput(path: "role", problem: "must be one of \(StaffRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return role
    }

    static func depth(_ text: String?) throws -> Double? {
        guard let text = blankToNil(text) else { return nil }
        guard let depth = Double(text) else { throw InvalidInput(path: "maxDepthMm", problem: "'\(text)' is not a depth in mm") }
        if let problem = StaffAccounts.maxDepthProblem(depth) { throw InvalidInput(path: "maxDepthMm", problem: problem) }
        return depth
    }

    static func blankToNil(_ text: String?) -> String? {
        guard let trimmed = text?.trimmingCharacters(in: .whitespaces), !trimmed.isEmpty else { return nil }
        return trimmed
    }
}
