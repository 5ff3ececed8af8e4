import Fluent
import Foundation
import Vapor

/// The three kinds of staff; what each may do is decided in one place, `AccessRule`.
public enum StaffRole: String, Codable, Sendable, CaseIterable {
    case admin
    case practitioner
    case frontDesk = "front-desk"

    var displayName: String {
        switch self {
        case .admin: "Admin"
        case .practitioner: "Practitioner"
        case .frontDesk: "Front desk"
        }
    }
}

/// A person who signs in to Dermis. Never deleted: deactivated.
final class StaffUser: Model, @unchecked Sendable {
    static let schema = "staff_user"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "email") var email: String
    @Field(key: "name") var name: String
    @Field(key: "password_hash") var passwordHash: String
    @Field(key: "role") var role: String
    /// Physician, nurse, aesthetician…: what the clinic's scope-of-practice rules turn on.
    @OptionalField(key: "credential") var credential: String?
    /// The deepest the practitioner may needle, in mm (per jurisdiction and credential).
    @OptionalField(key: "max_depth_mm") var maxDepthMm: Double?
    @OptionalField(key: "totp_secret") var totpSecret: String?
    @Field(key: "totp_enabled") var totpEnabled: Bool
    /// The last 30-second step whose code was accepted: a code is good once (RFC 6238 §5.2).
    @OptionalField(key: "totp_last_step") var totpLastStep: Int?
    /// Wrong second-factor codes in a row since the last right one; at `SecondFactor.lockAfter` the factor locks.
    @OptionalField(key: "totp_failures") var totpFailures: Int?
    /// No second-factor code is tried before this instant.
    @OptionalField(key: "totp_locked_until") var totpLockedUntil: Date?
    @Field(key: "active") var active: Bool
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "created_by") var createdBy: UUID?

    init() {}

    init(clinicID: UUID, email: String, name: String, passwordHash: String, role: StaffRole, credential: String? = nil,
         maxDepthMm: Double? = nil, createdAt: Date, createdBy: UUID?) {
        self.$clinic.id = clinicID
        self.email = email.lowercased()
        self.name = name
        self.passwordHash = passwordHash
        self.role = role.rawValue
        self.credential = credential
        self.maxDepthMm = maxDepthMm
        self.totpEnabled = false
        self.active = true
        self.createdAt = createdAt
        self.createdBy = createdBy
    }

    var staffRole: StaffRole { StaffRole(rawValue: role) ?? .frontDesk }

    /// Admins must use a second factor (docs/SECURITY.md R8).
    var mustUseTOTP: Bool { staffRole == .admin || totpEnabled }

    /// The authenticator, its key decrypted with the server's key file.
    func authenticator(_ box: SecretBox) throws -> AuthenticatorApp? {
        guard let totpSecret else { return nil }
        return AuthenticatorApp(base32: try box.open(totpSecret))
    }

    /// Turns the authenticator on with this key (stored encrypted), or off with nil.
    func setAuthenticator(_ totp: AuthenticatorApp?, _ box: SecretBox) throws {
        totpSecret = try totp.map { try box.seal($0.base32) }
        totpEnabled = totp != nil
        totpLastStep = nil
        totpFailures = nil
        totpLockedUntil = nil
    }
}

/// A one-time link to set a password: for new staff, an admin's reset and "forgot password". Single use, 24 hours,
/// only the digest of its token stored.
final class PasswordLink: Model, @unchecked Sendable {
    static let schema = "password_link"
    static let lifetime: TimeInterval = 24 * 3600

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: StaffUser
    @Field(key: "token_hash") var tokenHash: String
    /// `welcome` (a new account), `reset` (an admin's) or `forgot` (the person's own request).
    @Field(key: "purpose") var purpose: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "used_at") var usedAt: Date?
    @OptionalField(key: "created_by") var createdBy: UUID?

    init() {}

    init(userID: UUID, tokenHash: String, purpose: String, at now: Date, createdBy: UUID?) {
        self.$user.id = userID
        self.tokenHash = tokenHash
        self.purpose = purpose
        self.createdAt = now
        self.expiresAt = now.addingTimeInterval(Self.lifetime)
        self.createdBy = createdBy
    }
}

/// The second-factor lock and set-password links.
struct CredentialLifecycle: AsyncMigration {
    func prepare(on database: any Database) async throws {
        // One column per ALTER TABLE: SQLite takes no more.
        try await database.schema(StaffUser.schema).field("totp_failures", .int).update()
        try await database.schema(StaffUser.schema).field("totp_locked_until", .datetime).update()
        try await database.schema(PasswordLink.schema)
            .id()
            .field("user_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("token_hash", .string, .required)
            .field("purpose", .string, .required)
            .field("created_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .field("used_at", .datetime)
            .field("created_by", .uuid)
            .unique(on: "token_hash")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(PasswordLink.schema).delete()
        try await database.schema(StaffUser.schema).deleteField("totp_failures").update()
        try await database.schema(StaffUser.schema).deleteField("totp_locked_until").update()
    }
}

/// A signed-in browser: the cookie holds a random token, the database only its digest.
final class WebSession: Model, @unchecked Sendable {
    static let schema = "web_session"

    @ID(key: .id) var id: UUID?
    @Field(key: "token_hash") var tokenHash: String
    @Parent(key: "user_id") var user: StaffUser
    /// `full` once every factor is checked; `totp` after the password; `enrol` for an admin with no second factor yet.
    @Field(key: "stage") var stage: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "last_seen_at") var lastSeenAt: Date

    init() {}

    init(tokenHash: String, userID: UUID, stage: SessionStage, at date: Date) {
        self.tokenHash = tokenHash
        self.$user.id = userID
        self.stage = stage.rawValue
        self.createdAt = date
        self.lastSeenAt = date
    }
}

enum SessionStage: String, Sendable {
    case full, totp, enrol
}

/// A bearer token for the JSON API, stored hashed, revocable, expiring.
final class APIToken: Model, @unchecked Sendable {
    static let schema = "api_token"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: StaffUser
    @Field(key: "name") var name: String
    @Field(key: "token_hash") var tokenHash: String
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "expires_at") var expiresAt: Date
    @OptionalField(key: "revoked_at") var revokedAt: Date?

    init() {}

    init(userID: UUID, name: String, tokenHash: String, createdAt: Date, expiresAt: Date) {
        self.$user.id = userID
        self.name = name
        self.tokenHash = tokenHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// A single-use code that stands in for the authenticator when it is lost.
final class RecoveryCode: Model, @unchecked Sendable {
    static let schema = "recovery_code"

    @ID(key: .id) var id: UUID?
    @Parent(key: "user_id") var user: StaffUser
    @Field(key: "code_hash") var codeHash: String
    @OptionalField(key: "used_at") var usedAt: Date?

    init() {}

    init(userID: UUID, codeHash: String) {
        self.$user.id = userID
        self.codeHash = codeHash
    }
}

/// One failed sign-in, counted per account and per address over the last hour by every instance.
final class SignInFailure: Model, @unchecked Sendable {
    static let schema = "sign_in_failure"

    @ID(key: .id) var id: UUID?
    @Field(key: "email") var email: String
    @Field(key: "address") var address: String
    @Field(key: "at") var at: Date

    init() {}

    init(email: String, address: String, at: Date) {
        self.email = email
        self.address = address
        self.at = at
    }
}

struct CreateStaffAccounts: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(StaffUser.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("email", .string, .required)
            .field("name", .string, .required)
            .field("password_hash", .string, .required)
            .field("role", .string, .required)
            .field("credential", .string)
            .field("max_depth_mm", .double)
            .field("totp_secret", .string)
            .field("totp_enabled", .bool, .required)
            .field("totp_last_step", .int)
            .field("active", .bool, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid)
            .unique(on: "email")
            .create()
        try await database.schema(WebSession.schema)
            .id()
            .field("token_hash", .string, .required)
            .field("user_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("stage", .string, .required)
            .field("created_at", .datetime, .required)
            .field("last_seen_at", .datetime, .required)
            .unique(on: "token_hash")
            .create()
        try await database.schema(APIToken.schema)
            .id()
            .field("user_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("name", .string, .required)
            .field("token_hash", .string, .required)
            .field("created_at", .datetime, .required)
            .field("expires_at", .datetime, .required)
            .field("revoked_at", .datetime)
            .unique(on: "token_hash")
            .create()
        try await database.schema(RecoveryCode.schema)
            .id()
            .field("user_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("code_hash", .string, .required)
            .field("used_at", .datetime)
            .create()
        try await database.schema(SignInFailure.schema)
            .id()
            .field("email", .string, .required)
            .field("address", .string, .required)
            .field("at", .datetime, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        for schema in [SignInFailure.schema, RecoveryCode.schema, APIToken.schema, WebSession.schema, StaffUser.schema] {
            try await database.schema(schema).delete()
        }
    }
}
