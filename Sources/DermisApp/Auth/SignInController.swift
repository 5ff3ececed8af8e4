import DermisCore
import Fluent
import SQLKit
import Vapor

/// `/login`, the second factor, `/logout` and the first-run page.
struct SignInController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("login", use: form).access(.open)
        routes.post("login", use: signIn).access(.open)
        routes.get("login", "totp", use: totpForm).access(.signingIn)
        routes.post("login", "totp", use: verifyTOTP).access(.signingIn)
        routes.post("logout", use: signOut).access(.signingIn)
        routes.get("setup", use: setupForm).access(.firstRun)
        routes.post("setup", use: setup).access(.firstRun)
    }

    struct LoginPage: Encodable {
        let page: PageHeader
        let email: String
        let next: String
        let error: String?
        let firstRun: Bool
    }

    func form(req: Request) async throws -> View {
        let next = Self.safeNext((try? req.query.get(String.self, at: "next")) ?? "/today")
        let firstRun = try await FirstRun.isOpen(on: req.db)
        return try await req.view.render("login", LoginPage(page: try await PageHeader(req, title: "Sign in"), email: "", next: next,
                                                            error: nil, firstRun: firstRun))
    }

    struct Credentials: Content {
        var email: String?
        var password: String?
        var next: String?
    }

    func signIn(req: Request) async throws -> Response {
        let credentials = try req.content.decode(Credentials.self)
        let email = (credentials.email ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let next = Self.safeNext(credentials.next ?? "/today")
        let limiter = SignInLimiter(req: req)
        try await limiter.refuseIfLimited(email: email)

        let user = try await StaffUser.query(on: req.db).filter(\.$email == email).first()
        let password = credentials.password ?? ""
        // Verify against a dummy hash for unknown accounts so the reply takes as long either way.
        var digest = user?.passwordHash ?? ""
        if user == nil {
            // The first use computes the cost-12 dummy hash: do it on the thread pool, never on the event loop.
            digest = try await req.application.threadPool.runIfActive { SignInLimiter.dummyHash }
        }
        let acceptable = password.utf8.count <= PasswordPolicy.maximumBytes && !password.contains("\u{0}")
        let verified = try await StaffAccounts.verify(password, against: digest, on: req.application)
        let matches = acceptable && verified
        guard let user, matches, user.active else {
            // A failed sign-in to a known account belongs in that clinic's audit chain.
            if let user { req.auditClinicID = user.$clinic.id }
            try await limiter.recordFailure(email: email)
            try await req.audit(.signIn, objectType: "StaffUser", objectID: user?.id?.uuidString, outcome: .failure)
            let page = LoginPage(page: try await PageHeader(req, title: "Sign in"), email: email, next: next,
                                 error: "The email or password is not right.", firstRun: false)
            return try await req.view.render("login", page).response(.unauthorized, for: req)
        }
        // The cost has risen since this hash was made: redo it now that we know the password.
        let cost = req.dermis.settings.passwordCost
        if let stored = StaffAccounts.cost(of: user.passwordHash), stored < cost {
            user.passwordHash = try await StaffAccounts.hash(password, cost: cost, on: req.application)
            try await Writes.transaction(req.db) { db in try await user.save(on: db) }
        }
        let stage: SessionStage = user.totpEnabled ? .totp : (user.mustUseTOTP ? .enrol : .full)
        let target = switch stage {
        case .full: next
        case .totp: "/login/totp?next=\(next.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/")"
        case .enrol: "/account/totp"
        }
        let response = req.redirect(to: target, redirectType: .normal)
        try await Sessions.start(for: user, stage: stage, on: req, response: response)
        req.principal = try Principal(user, sessionID: nil, stage: stage)
        try await req.audit(.signIn, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
        return response
    }

    struct CodePage: Encodable {
        let page: PageHeader
        let next: String
        let error: String?
    }

    func totpForm(req: Request) async throws -> View {
        let next = Self.safeNext((try? req.query.get(String.self, at: "next")) ?? "/today")
        return try await req.view.render("login-totp", CodePage(page: try await PageHeader(req, title: "Second factor"), next: next, error: nil))
    }

    struct CodeForm: Content {
        var code: String?
        var next: String?
    }

    func verifyTOTP(req: Request) async throws -> Response {
        guard let principal = req.principal, principal.stage == .totp, let sessionID = principal.sessionID,
              let user = try await StaffUser.find(principal.userID, on: req.db) else { return req.redirect(to: "/login") }
        let form = try req.content.decode(CodeForm.self)
        let next = Self.safeNext(form.next ?? "/today")
        let limiter = SignInLimiter(req: req)
        try await limiter.refuseIfLimited(email: user.email)
        func refuse(_ status: HTTPStatus, _ error: String) async throws -> Response {
            try await req.view.render("login-totp", CodePage(page: try await PageHeader(req, title: "Second factor"), next: next, error: error))
                .response(status, for: req)
        }
        // Each attempt is counted before its code is tried (an atomic reservation), so codes sent in parallel cannot
        // outrun the lock: at most `lockAfter` codes are ever tried per lock period.
        guard let attempt = try await SecondFactor.reserveAttempt(for: user, on: req) else {
            try await req.audit(.signIn, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .denied)
            let until = try await StaffUser.find(user.requireID(), on: req.db)?.totpLockedUntil ?? req.dermis.clock.now()
            return try await refuse(.tooManyRequests, SecondFactor.lockedMessage(until: until, for: req))
        }
        if attempt > SecondFactor.lockAfter {
            let until = try await SecondFactor.lock(user, on: req)
            return try await refuse(.tooManyRequests, SecondFactor.lockedMessage(until: until, for: req))
        }
        let code = (form.code ?? "").trimmingCharacters(in: .whitespaces)
        // Spending the code, ending the half-signed-in session and starting the full one are one unit of work.
        let response = req.redirect(to: next, redirectType: .normal)
        let accepted = try await Writes.transaction(req.db) { db in
            guard try await SecondFactor.accepts(code, for: user, on: req) else { return false }
            try await SecondFactor.clearFailures(of: user, on: db)
            try await WebSession.query(on: db).filter(\.$id == sessionID).delete()
            try await Sessions.start(for: user, stage: .full, on: req, response: response)
            try await req.audit(.signIn, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .success)
            return true
        }
        guard accepted else {
            // Wrong codes have their own count (not the password's hourly budget): the tenth in a row locks the factor.
            if attempt >= SecondFactor.lockAfter {
                let until = try await SecondFactor.lock(user, on: req)
                return try await refuse(.tooManyRequests, SecondFactor.lockedMessage(until: until, for: req))
            }
            try await req.audit(.signIn, objectType: "StaffUser", objectID: user.id?.uuidString, outcome: .failure)
            return try await refuse(.unauthorized, "That code is not right.")
        }
        return response
    }

    func signOut(req: Request) async throws -> Response {
        if let sessionID = req.principal?.sessionID {
            try await Writes.transaction(req.db) { db in
                try await WebSession.query(on: db).filter(\.$id == sessionID).delete()
                try await req.audit(.signOut, objectType: "StaffUser", objectID: req.principal?.userID.uuidString, outcome: .success)
            }
        }
        let response = req.redirect(to: "/login", redirectType: .normal)
        Sessions.setCookie("", on: response, request: req, expire: true)
        return response
    }

    struct SetupPage: Encodable {
        let page: PageHeader
        let errors: [ErrorLine]
        let clinicName: String
        let timeZone: String
        let name: String
        let email: String
    }

    func setupForm(req: Request) async throws -> View {
        try await req.view.render("setup", SetupPage(page: try await PageHeader(req, title: "First run"), errors: [],
                                                     clinicName: "", timeZone: TimeZone.current.identifier, name: "", email: ""))
    }

    struct SetupForm: Content {
        var setupCode: String?
        var clinicName: String?
        var timeZone: String?
        var name: String?
        var email: String?
        var password: String?
    }

    func setup(req: Request) async throws -> Response {
        let form = try req.content.decode(SetupForm.self)
        let limiter = SignInLimiter(req: req)
        // Counted per address only: a stranger's wrong codes must not shut the operator out.
        let key = SignInLimiter.setupKey + " " + req.clientAddress
        try await limiter.refuseIfLimited(email: key)
        do {
            guard req.dermis.firstRunCode.matches(form.setupCode ?? "") else {
                try await limiter.recordFailure(email: key)
                try await req.audit(.staffChange, objectType: "StaffUser", outcome: .denied)
                throw InvalidInput(path: "setupCode", problem: "is not the code `dermis serve` printed on its terminal")
            }
            // The clinic and its first admin: both or neither.
            try await Writes.transaction(req.db) { db in
                let clinic = try await StaffAccounts.clinic(named: form.clinicName ?? "", timeZone: form.timeZone ?? "UTC", on: db)
                _ = try await StaffAccounts.create(
                    .init(email: form.email ?? "", name: form.name ?? "", password: form.password ?? "", role: .admin),
                    clinicID: clinic.requireID(), createdBy: nil, on: req.application, db: db)
            }
            req.dermis.firstRunCode.retire()
            return req.redirect(to: "/login", redirectType: .normal)
        } catch let invalid as InvalidInput {
            let page = SetupPage(page: try await PageHeader(req, title: "First run"),
                                 errors: ErrorLine.list(invalid),
                                 clinicName: form.clinicName ?? "", timeZone: form.timeZone ?? "", name: form.name ?? "", email: form.email ?? "")
            let status: HTTPStatus = invalid.issues.contains { $0.path == "setupCode" } ? .forbidden : .unprocessableEntity
            return try await req.view.render("setup", page).response(status, for: req)
        }
    }

    /// Only paths on this site: never an absolute URL an attacker could send someone to. The check is made on the text
    /// as a browser (or Python's URL parser) reads it — tabs and line breaks dropped, backslashes as slashes, leading
    /// controls and spaces trimmed — so `/\t/evil.example` cannot become `//evil.example` after the check.
    static func safeNext(_ next: String) -> String {
        let dropped = String(String.UnicodeScalarView(next.unicodeScalars.filter { !["\t", "\n", "\r"].contains($0) }))
        let read = dropped.replacingOccurrences(of: "\\", with: "/")
            .trimmingCharacters(in: CharacterSet.controlCharacters.union(.whitespaces))
        guard read == next, read.hasPrefix("/"), !read.hasPrefix("//"),
              let url = URLComponents(string: read), url.scheme == nil, url.host == nil else { return "/" }
        return read
    }

}

/// Counts failed sign-ins in the database, so the limit holds across server instances (R8).
struct SignInLimiter {
    let req: Request

    /// The key wrong first-run setup codes are counted under (the per-address limit applies as to passwords).
    static let setupKey = "(first-run setup code)"

    /// A valid bcrypt hash of a random string, verified against when the account does not exist.
    static let dummyHash = (try? Bcrypt.hash(Secrets.token(), cost: 12)) ?? ""

    func refuseIfLimited(email: String) async throws {
        let settings = req.dermis.settings
        let hourAgo = req.dermis.clock.now().addingTimeInterval(-3600)
        let perAccount = try await SignInFailure.query(on: req.db).filter(\.$email == email).filter(\.$at > hourAgo).count()
        let perAddress = try await SignInFailure.query(on: req.db).filter(\.$address == req.clientAddress).filter(\.$at > hourAgo).count()
        if perAccount >= settings.failuresPerAccountPerHour || perAddress >= settings.failuresPerAddressPerHour {
            req.logger.warning("Sign-in refused: too many failed attempts in the last hour (\(perAccount >= settings.failuresPerAccountPerHour ? "account" : "address") limit)")
            try await req.audit(.signIn, objectType: "StaffUser", outcome: .denied)
            throw Abort(.tooManyRequests, reason: "Too many failed sign-ins. Try again later or ask an admin.")
        }
    }

    /// Records a failure, and drops those older than a day: only the last hour counts.
    func recordFailure(email: String) async throws {
        let now = req.dermis.clock.now()
        let failure = SignInFailure(email: email, address: req.clientAddress, at: now)
        try await Writes.transaction(req.db) { db in
            try await failure.create(on: db)
            try await SignInFailure.query(on: db).filter(\.$at < now.addingTimeInterval(-86400)).delete()
        }
    }
}

/// The second factor: a TOTP code from the authenticator or one unused recovery code. Each is good once, even
/// against two requests at the same moment: using one is a conditional update that only one of them passes.
enum SecondFactor {
    private struct CodeAlreadyUsed: Error {}

    /// Wrong codes in a row that lock the second factor, and for how long.
    static let lockAfter = 10
    static let lockDuration: TimeInterval = 15 * 60

    static func lockedMessage(until: Date, for req: Request) -> String {
        let minutes = max(1, Int((until.timeIntervalSince(req.dermis.clock.now()) / 60).rounded(.up)))
        return "Too many wrong codes in a row: the second factor is locked for \(minutes) more minute\(minutes == 1 ? "" : "s"). "
            + "Wait, or ask an admin to reset your authenticator."
    }

    /// Counts an attempt before its code is tried — one atomic UPDATE that only passes while the factor is not locked —
    /// and returns its number in the current run of wrong codes; nil while the factor is locked.
    static func reserveAttempt(for user: StaffUser, on req: Request) async throws -> Int? {
        let id = try user.requireID()
        let now = req.dermis.clock.now()
        return try await Writes.transaction(req.db) { db -> Int? in
            guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
            let failures = Column<StaffUser>.name(\.$totpFailures), lockedUntil = Column<StaffUser>.name(\.$totpLockedUntil)
            let row = try await sql.update(StaffUser.schema)
                .set(SQLIdentifier(failures), to: SQLBinaryExpression(SQLFunction("COALESCE", args: SQLIdentifier(failures), SQLLiteral.numeric("0")),
                                                                      .add, SQLLiteral.numeric("1")))
                .where(SQLIdentifier(Column<StaffUser>.name(\._$id)), .equal, SQLBind(id))
                .where(group: { $0.where(SQLIdentifier(lockedUntil), .is, SQLLiteral.null).orWhere(SQLIdentifier(lockedUntil), .lessThanOrEqual, SQLBind(now)) })
                .returning(SQLIdentifier(failures))
                .first()
            return try row?.decode(column: failures, as: Int.self)
        }
    }

    /// Locks the second factor for `lockDuration` from now (a new run of attempts starts after it), audited and logged.
    static func lock(_ user: StaffUser, on req: Request) async throws -> Date {
        let id = try user.requireID()
        let until = req.dermis.clock.now().addingTimeInterval(lockDuration)
        try await Writes.transaction(req.db) { db in
            try await StaffUser.query(on: db).filter(\.$id == id).set(\.$totpFailures, to: 0).set(\.$totpLockedUntil, to: until).update()
        }
        req.logger.warning("Second factor locked for 15 minutes after \(lockAfter) wrong codes in a row", metadata: ["staff": "\(id)"])
        try await req.audit(.signIn, objectType: "StaffUser", objectID: id.uuidString, outcome: .denied)
        return until
    }

    /// A right code ends the run of wrong ones, including any counted by requests still in flight.
    static func clearFailures(of user: StaffUser, on db: any Database) async throws {
        try await StaffUser.query(on: db).filter(\.$id == user.requireID()).set(\.$totpFailures, to: nil).set(\.$totpLockedUntil, to: nil).update()
    }

    /// Encrypts authenticator keys stored before keys were encrypted at rest (a one-time upgrade at start). A key file
    /// made just now beside keys sealed with another one means the original file is lost or misnamed: the new file is
    /// removed and the start refused, rather than every second factor failing.
    static func sealStoredKeys(on app: Application, keyWasCreated: Bool = false, keyPath: String = "") async throws {
        let box = app.dermis.secretBox
        let stored = try await StaffUser.query(on: app.db).filter(\.$totpSecret != nil).all()
        if keyWasCreated, stored.contains(where: { SecretBox.isSealed($0.totpSecret ?? "") }) {
            try? FileManager.default.removeItem(atPath: keyPath)
            throw SecretKeyFileError(path: keyPath, problem: "did not exist, but the database holds authenticator keys sealed with a key file: "
                                     + "restore that file (or point \(SecretBox.variable) at it) and start again")
        }
        let plain = stored.filter { !SecretBox.isSealed($0.totpSecret ?? "") }
        guard !plain.isEmpty else { return }
        try await Writes.transaction(app.db) { db in
            for user in plain {
                user.totpSecret = try box.seal(user.totpSecret ?? "")
                try await user.save(on: db)
            }
        }
        app.logger.notice("Encrypted \(plain.count) stored authenticator key(s) with the secret key file")
    }

    static func accepts(_ code: String, for user: StaffUser, on req: Request) async throws -> Bool {
        // A key that cannot be opened is logged and leaves the recovery codes to try, never a 500.
        var authenticator: AuthenticatorApp?
        do { authenticator = try user.authenticator(req.dermis.secretBox) } catch {
            req.logger.error("An authenticator key cannot be decrypted with the secret key file", metadata: ["staff": "\(user.id?.uuidString ?? "")"])
        }
        if let totp = authenticator,
           let step = totp.matchingStep(code, at: req.dermis.clock.now(), after: user.totpLastStep) {
            // Compare-and-set on the step read: of two requests with one code, only one moves it on.
            var claim = try ConditionalUpdate(StaffUser.self, id: try user.requireID(), on: req.db).set(\.$totpLastStep, to: step)
            claim = if let last = user.totpLastStep { claim.where(\.$totpLastStep, .equal, last) } else { claim.whereNull(\.$totpLastStep) }
            do { try await claim.run(orThrow: CodeAlreadyUsed()) } catch is CodeAlreadyUsed { return false }
            user.totpLastStep = step
            return true
        }
        let digest = Secrets.digest(code.lowercased())
        if let recovery = try await RecoveryCode.query(on: req.db).filter(\.$user.$id == user.requireID())
            .filter(\.$codeHash == digest).filter(\.$usedAt == nil).first() {
            do {
                try await ConditionalUpdate(RecoveryCode.self, id: try recovery.requireID(), on: req.db)
                    .whereNull(\.$usedAt)
                    .set(\.$usedAt, to: req.dermis.clock.now())
                    .run(orThrow: CodeAlreadyUsed())
            } catch is CodeAlreadyUsed { return false }
            return true
        }
        return false
    }

    /// Ten fresh recovery codes (the old ones are dropped); the plain codes are shown once.
    static func newRecoveryCodes(for userID: UUID, on db: any Database) async throws -> [String] {
        try await RecoveryCode.query(on: db).filter(\.$user.$id == userID).delete()
        let alphabet = Array("abcdefghjkmnpqrstuvwxyz23456789")
        var codes: [String] = []
        for _ in 0..<10 {
            let code = String((0..<10).map { _ in alphabet.randomElement()! })
            codes.append(code)
            try await RecoveryCode(userID: userID, codeHash: Secrets.digest(code)).create(on: db)
        }
        return codes
    }
}
