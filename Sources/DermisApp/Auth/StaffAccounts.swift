import DermisCore
import Fluent
import Vapor

/// Creating staff and checking their passwords, shared by the CLI, the first-run page, the demo and the admin pages.
enum StaffAccounts {
    /// Every staff member's name in a clinic by id, for showing who did what.
    static func names(in clinicID: UUID, on db: any Database) async throws -> [UUID: String] {
        Dictionary(try await StaffUser.query(on: db).filter(\.$clinic.$id == clinicID).all().map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
    }

    /// bcrypt off the event loop. `cost` comes from the settings (12 in production).
    static func hash(_ password: String, cost: Int, on app: Application) async throws -> String {
        try await app.threadPool.runIfActive { try Bcrypt.hash(password, cost: cost) }
    }

    static func verify(_ password: String, against digest: String, on app: Application) async throws -> Bool {
        try await app.threadPool.runIfActive { (try? Bcrypt.verify(password, created: digest)) ?? false }
    }

    /// The cost a stored bcrypt hash was made with (`$2b$12$…` → 12).
    static func cost(of digest: String) -> Int? {
        let parts = digest.split(separator: "$")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }

    struct NewStaff: Sendable {
        var email: String
        var name: String
        var password: String
        var role: StaffRole
        var credential: String?
        var maxDepthMm: Double?
    }

    /// Validates and stores a new staff member; every problem is reported with its field.
    static func create(_ new: NewStaff, clinicID: UUID, createdBy: UUID?, on app: Application, db: any Database) async throws -> StaffUser {
        var issues: [FieldIssue] = []
        let email = new.email.trimmingCharacters(in: .whitespaces).lowercased()
        if !email.contains("@") || email.count > 254 || email.contains(where: \.isWhitespace) {
            issues.append(FieldIssue(path: "email", problem: "'\(new.email)' is not an email address"))
        } else if try await StaffUser.query(on: db).filter(\.$email == email).count() > 0 {
            issues.append(FieldIssue(path: "email", problem: "a staff member with this email already exists"))
        }
        let name = new.name.trimmingCharacters(in: .whitespaces)
        if name.isEmpty || name.count > 100 { issues.append(FieldIssue(path: "name", problem: "is required (at most 100 characters)")) }
        if let problem = PasswordPolicy.problem(with: new.password) { issues.append(FieldIssue(path: "password", problem: problem)) }
        if let issue = TextLimits.issue(new.credential, "credential", max: TextLimits.short) { issues.append(issue) }
        if let problem = maxDepthProblem(new.maxDepthMm) { issues.append(FieldIssue(path: "maxDepthMm", problem: problem)) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let digest = try await hash(new.password, cost: app.dermis.settings.passwordCost, on: app)
        let user = StaffUser(clinicID: clinicID, email: email, name: name, passwordHash: digest, role: new.role,
                             credential: new.credential, maxDepthMm: new.maxDepthMm, createdAt: app.dermis.clock.now(), createdBy: createdBy)
        try await user.create(on: db)
        return user
    }

    /// What is wrong with a licensed maximum depth, if anything.
    static func maxDepthProblem(_ depth: Double?) -> String? {
        guard let depth else { return nil }
        let deepest = ClinicalProtocol.deepestNeedleMm
        return depth > 0 && depth <= deepest ? nil : "must be above 0 and at most \(formatMillimetres(deepest)) mm, not \(formatMillimetres(depth))"
    }

    /// The clinic to attach a first admin to: the existing one, or a new one with this name — always a new one with
    /// `new` (another clinic of a chain in the same database).
    static func clinic(named name: String, timeZone: String, new: Bool = false, on db: any Database) async throws -> Clinic {
        if !new, let existing = try await Clinic.query(on: db).sort(\.$createdAt).first() { return existing }
        guard TimeZone(identifier: timeZone) != nil else { throw InvalidInput(path: "timeZone", problem: "unknown time zone '\(timeZone)'") }
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw InvalidInput(path: "clinicName", problem: "is required") }
        if let issue = TextLimits.issue(trimmed, "clinicName", max: TextLimits.short) { throw InvalidInput([issue]) }
        if trimmed.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) {
            throw InvalidInput(path: "clinicName", problem: "must be one line of text")
        }
        let clinic = Clinic(name: trimmed, timeZone: timeZone, isDemo: false)
        try await clinic.create(on: db)
        return clinic
    }
}
