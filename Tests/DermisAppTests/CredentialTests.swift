import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R7, R8: the first run, passwords over their life, role changes and the second factor's own limit.
    @Suite struct Credentials {
        // MARK: First run

        @Test func theFirstRunPageWantsTheCodeTheServerPrintedNotALocalAddress() async throws {
            try await withDermis(seedDemo: false) { app, _ in
                // No code issued (no `dermis serve` printed one): no page, from any address.
                try await app.testing().test(.GET, "/setup", headers: ["X-Forwarded-For": "127.0.0.1"]) { #expect($0.status == .notFound) }
                let code = app.dermis.firstRunCode.issue()
                try await app.testing().test(.GET, "/setup") { #expect($0.status == .ok) }
                var fields = [("clinicName", "Setup Clinic"), ("timeZone", "UTC"), ("name", "First"), ("email", "first@clinic.example"),
                              ("password", "a long enough passphrase")]
                try await app.testing().test(.POST, "/setup", headers: formHeaders, body: form(fields + [("setupCode", "AAAA-BBBB-CCCC-DDDD")])) { res in
                    #expect(res.status == .forbidden)
                    #expect(res.body.string.contains(#"data-field="setupCode""#))
                }
                #expect(try await StaffUser.query(on: app.db).count() == 0)
                #expect(try await Clinic.query(on: app.db).count() == 0)
                #expect(try await SignInFailure.query(on: app.db).filter(\.$email == SignInLimiter.setupKey + " unknown").count() == 1)
                fields.append(("setupCode", code.lowercased().replacingOccurrences(of: "-", with: " ")))
                try await app.testing().test(.POST, "/setup", headers: formHeaders, body: form(fields)) { res in
                    #expect(res.status == .seeOther && res.headers.first(name: .location) == "/login")
                }
                #expect(try await StaffUser.query(on: app.db).filter(\.$role == "admin").count() == 1)
                // Spent with the first admin: the same code opens nothing.
                try await app.testing().test(.POST, "/setup", headers: formHeaders, body: form(fields)) { #expect($0.status == .notFound) }
            }
        }

        // MARK: Passwords

        @Test func commonPasswordsAreRefusedNamingTheField() async throws {
            #expect(PasswordPolicy.isCommon("Password1") && PasswordPolicy.isCommon("iloveyou2"))
            #expect(!PasswordPolicy.isCommon("correct horse battery"))
            #expect(PasswordPolicy.problem(with: "baseball1")?.contains("commonly used") == true)
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let session = try await signIn(app, staff, clock: settings.clock)
                var headers = session
                headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/account/password", headers: headers,
                                             body: form([("current", staff.password), ("password", "qwertyuiop"), ("confirm", "qwertyuiop")])) { res in
                    #expect(res.status == .unprocessableEntity)
                    #expect(res.body.string.contains(#"data-field="password""#) && res.body.string.contains("commonly used"))
                }
                // Nothing changed: the old password still signs in.
                _ = try await signIn(app, staff, clock: settings.clock)
            }
        }

        @Test func changingYourPasswordNeedsTheCurrentOneAndEndsYourOtherSessionsAndTokens() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let here = try await signIn(app, staff, clock: settings.clock)
                let elsewhere = try await signIn(app, staff, clock: settings.clock)
                let token = try await DermisApp.Sessions.issueToken(for: staff.id, name: "script", days: 30, on: app.db, at: settings.clock.now())
                var headers = here
                headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/account/password", headers: headers,
                                             body: form([("current", "not my password"), ("password", "a brand new passphrase"),
                                                         ("confirm", "a brand new passphrase")])) { res in
                    #expect(res.status == .forbidden && res.body.string.contains(#"data-field="current""#))
                }
                #expect(try await SignInFailure.query(on: app.db).filter(\.$email == staff.user.email).count() == 1)
                try await app.testing().test(.POST, "/account/password", headers: headers,
                                             body: form([("current", staff.password), ("password", "a brand new passphrase"),
                                                         ("confirm", "a brand new passphrase!")])) { res in
                    #expect(res.status == .unprocessableEntity && res.body.string.contains(#"data-field="confirm""#))
                }
                try await app.testing().test(.GET, "/api/v1/patients", headers: elsewhere) { #expect($0.status == .ok) }
                try await app.testing().test(.POST, "/account/password", headers: headers,
                                             body: form([("current", staff.password), ("password", "a brand new passphrase"),
                                                         ("confirm", "a brand new passphrase")])) { res in
                    #expect(res.status == .ok && res.body.string.contains(#"id="changed""#))
                }
                try await app.testing().test(.GET, "/api/v1/patients", headers: here) { #expect($0.status == .ok) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: elsewhere) { #expect($0.status == .unauthorized) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: ["Authorization": "Bearer \(token)"]) {
                    #expect($0.status == .unauthorized)
                }
                _ = try await signIn(app, TestStaff(user: staff.user, password: "a brand new passphrase", totp: nil), clock: settings.clock)
            }
        }

        @Test func anAdminHandsOverAOneTimeLinkThatLastsADayAndIsStoredOnlyAsADigest() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                var headers = try await signIn(app, admin, clock: settings.clock)
                headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                var link = ""
                try await app.testing().test(.POST, "/admin/staff", headers: headers,
                                             body: form([("name", "New Nurse"), ("email", "nurse@test.example"), ("role", "practitioner")])) { res in
                    #expect(res.status == .ok)
                    link = Self.passwordLink(in: res.body.string)
                }
                let path = try #require(URL(string: link)?.path)
                let token = String(path.dropFirst("/password/".count))
                // The link is also e-mailed to the person (through the outbox).
                let mailed = try await OutboxMessage.query(on: app.db).filter(\.$recipient == "nurse@test.example").all()
                #expect(mailed.count == 1 && mailed[0].body.contains(link))
                #expect(token.count >= 40)
                let stored = try await PasswordLink.query(on: app.db).all()
                #expect(stored.count == 1 && stored[0].tokenHash == Secrets.digest(token) && stored[0].tokenHash != token)
                // Nobody knows the account's password until the link is used.
                let nurse = try #require(try await StaffUser.query(on: app.db).filter(\.$email == "nurse@test.example").first())
                // The last second of the day it works; the link then sets the password once.
                settings.manualClock.advance(by: PasswordLink.lifetime - 1)
                try await app.testing().test(.GET, path) { #expect($0.status == .ok && $0.body.string.contains("nurse@test.example")) }
                let chosen = [("password", "my own passphrase 7"), ("confirm", "my own passphrase 7")]
                try await app.testing().test(.POST, path, headers: formHeaders, body: form(chosen)) { res in
                    #expect(res.status == .seeOther && res.headers.first(name: .location)?.hasPrefix("/login") == true)
                }
                try await app.testing().test(.POST, path, headers: formHeaders, body: form(chosen)) { #expect($0.status == .notFound) }
                _ = try await signIn(app, TestStaff(user: nurse, password: "my own passphrase 7", totp: nil), clock: settings.clock)

                // A reset link the admin makes is dead a second after its day, and a newer one replaces an older one.
                settings.manualClock.advance(by: 60)
                headers = try await signIn(app, admin, clock: settings.clock)
                headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                var reset = ""
                try await app.testing().test(.POST, "/admin/staff/\(nurse.requireID())/password-link", headers: headers) { res in
                    #expect(res.status == .ok)
                    reset = URL(string: Self.passwordLink(in: res.body.string))?.path ?? ""
                }
                var newer = ""
                try await app.testing().test(.POST, "/admin/staff/\(nurse.requireID())/password-link", headers: headers) { res in
                    newer = URL(string: Self.passwordLink(in: res.body.string))?.path ?? ""
                }
                try await app.testing().test(.GET, reset) { #expect($0.status == .notFound) }
                settings.manualClock.advance(by: PasswordLink.lifetime + 1)
                try await app.testing().test(.GET, newer) { #expect($0.status == .notFound) }
                try await app.testing().test(.POST, newer, headers: formHeaders, body: form([("password", "x y z w v u"), ("confirm", "x y z w v u")])) {
                    #expect($0.status == .notFound)
                }
            }
        }

        @Test func forgotPasswordAnswersAlikeForAnyAddressAndMailsOnlyThePublicAddress() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                var replies: [String] = []
                for email in [staff.user.email, "nobody@test.example"] {
                    var headers = formHeaders
                    headers.replaceOrAdd(name: .host, value: "evil.example")
                    headers.replaceOrAdd(name: .origin, value: "http://evil.example")
                    try await app.testing().test(.POST, "/login/forgot", headers: headers, body: form([("email", email)])) { res in
                        #expect(res.status == .ok)
                        replies.append(res.body.string)
                    }
                }
                #expect(replies[0] == replies[1], "the reply reveals whether the account exists")
                let messages = try await OutboxMessage.query(on: app.db).filter(\.$recipient == staff.user.email).all()
                #expect(messages.count == 1)
                let body = try #require(messages.first?.body)
                #expect(body.contains("https://clinic.example/password/") && !body.contains("evil.example"))
                #expect(try await OutboxMessage.query(on: app.db).filter(\.$recipient == "nobody@test.example").count() == 0)
                // Asking never counts against the account's own sign-in budget.
                #expect(try await SignInFailure.query(on: app.db).filter(\.$email == staff.user.email).count() == 0)
            }
        }

        // MARK: Roles

        @Test func aRoleChangeOrDeactivationEndsThePersonsSessionsAndTokens() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                var adminHeaders = try await signIn(app, admin, clock: settings.clock)
                adminHeaders.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                for change in ["role", "deactivate"] {
                    let staff = try await makeStaff(app, role: .practitioner)
                    let session = try await signIn(app, staff, clock: settings.clock)
                    let token = try await DermisApp.Sessions.issueToken(for: staff.id, name: "t", days: 30, on: app.db, at: settings.clock.now())
                    let path = change == "role" ? "/admin/staff/\(staff.id)" : "/admin/staff/\(staff.id)/deactivate"
                    try await app.testing().test(.POST, path, headers: adminHeaders, body: form([("role", "front-desk")])) {
                        #expect($0.status == .seeOther)
                    }
                    try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
                    try await app.testing().test(.GET, "/api/v1/patients", headers: ["Authorization": "Bearer \(token)"]) {
                        #expect($0.status == .unauthorized)
                    }
                }
                // Saving the same role again ends nothing.
                let steady = try await makeStaff(app, role: .practitioner)
                let session = try await signIn(app, steady, clock: settings.clock)
                try await app.testing().test(.POST, "/admin/staff/\(steady.id)", headers: adminHeaders,
                                             body: form([("role", "practitioner"), ("maxDepthMm", "1.0")])) { #expect($0.status == .seeOther) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
            }
        }

        @Test func aPromotedAdminHasNoAdminRightsBeforeEnrollingAnAuthenticator() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let admin = try await makeStaff(app, role: .admin)
                var adminHeaders = try await signIn(app, admin, clock: settings.clock)
                adminHeaders.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/admin/staff/\(staff.id)", headers: adminHeaders, body: form([("role", "admin")])) {
                    #expect($0.status == .seeOther)
                }
                var cookie = ""
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    #expect(res.headers.first(name: .location) == "/account/totp")
                    cookie = sessionCookie(res) ?? ""
                }
                try await app.testing().test(.GET, "/admin/staff", headers: ["Cookie": cookie]) { res in
                    #expect(res.status == .seeOther && res.headers.first(name: .location) == "/account/totp")
                }
                try await app.testing().test(.GET, "/api/v1/patients", headers: ["Cookie": cookie]) { #expect($0.status == .unauthorized) }
                // A session made before the promotion cannot carry admin rights past the enrolment either.
                let session = try #require(try await WebSession.query(on: app.db).filter(\.$user.$id == staff.id).first())
                session.stage = SessionStage.full.rawValue
                try await session.save(on: app.db)
                try await app.testing().test(.GET, "/admin/staff", headers: ["Cookie": cookie]) { #expect($0.status == .seeOther) }
            }
        }

        // MARK: The second factor

        @Test func tenWrongCodesInARowLockTheSecondFactorForFifteenMinutes() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let totp = try #require(staff.totp)
                func halfSignedIn() async throws -> HTTPHeaders {
                    var headers = formHeaders
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                        headers.add(name: .cookie, value: sessionCookie(res) ?? "")
                    }
                    return headers
                }
                func attempt(_ code: String, _ headers: HTTPHeaders) async throws -> HTTPStatus {
                    var status = HTTPStatus.ok
                    try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", code)])) { status = $0.status }
                    return status
                }
                let wrong = totp.code(at: settings.clock.now()) == "000000" ? "111111" : "000000"
                var headers = try await halfSignedIn()
                for _ in 0..<9 { #expect(try await attempt(wrong, headers) == .unauthorized) }
                #expect(try await attempt(wrong, headers) == .tooManyRequests, "the tenth wrong code locks")
                // Locked: even the right code is not tried, up to the last second of the 15 minutes.
                #expect(try await attempt(totp.code(at: settings.clock.now()), headers) == .tooManyRequests)
                settings.manualClock.advance(by: 15 * 60 - 1)
                headers = try await halfSignedIn()
                #expect(try await attempt(totp.code(at: settings.clock.now()), headers) == .tooManyRequests)
                settings.manualClock.advance(by: 1)
                headers = try await halfSignedIn()
                #expect(try await attempt(totp.code(at: settings.clock.now()), headers) == .seeOther)
                // The wrong codes did not spend the password's hourly budget, and the lock is in the audit log.
                #expect(try await SignInFailure.query(on: app.db).count() == 0)
                let denied = try await AuditEvent.query(on: app.db).filter(\.$action == AuditAction.signIn.rawValue)
                    .filter(\.$outcome == AuditOutcome.denied.rawValue).filter(\.$objectID == staff.id.uuidString).count()
                #expect(denied >= 2)
                let user = try #require(try await StaffUser.find(staff.id, on: app.db))
                #expect((user.totpFailures ?? 0) == 0 && user.totpLockedUntil == nil)
            }
        }

        @Test func codesSentAllAtOnceCannotOutrunTheLock() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                var headers = formHeaders
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    headers.add(name: .cookie, value: sessionCookie(res) ?? "")
                }
                let wrong = staff.totp!.code(at: settings.clock.now()) == "000000" ? "111111" : "000000"
                let session = headers
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for _ in 0..<30 {
                        group.addTask {
                            var status = HTTPStatus.ok
                            try await app.testing().test(.POST, "/login/totp", headers: session, body: form([("code", wrong)])) { status = $0.status }
                            return status
                        }
                    }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                // Every attempt is counted before its code is tried: at most nine are told "wrong", the rest are locked out.
                #expect(statuses.filter { $0 == .unauthorized }.count <= SecondFactor.lockAfter - 1)
                #expect(statuses.filter { $0 == .tooManyRequests }.count >= 30 - (SecondFactor.lockAfter - 1))
                #expect(try await StaffUser.find(staff.id, on: app.db)?.totpLockedUntil != nil)
            }
        }

        @Test func forgotPasswordSendsAtMostThreeLinksADay() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                // Ten asks at the same moment (as a script would send them): still three links.
                let email = staff.user.email
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for _ in 0..<10 {
                        group.addTask {
                            var status = HTTPStatus.ok
                            try await app.testing().test(.POST, "/login/forgot", headers: formHeaders, body: form([("email", email)])) { status = $0.status }
                            return status
                        }
                    }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                #expect(statuses.allSatisfy { $0 == .ok }, "\(statuses)")
                #expect(try await OutboxMessage.query(on: app.db).filter(\.$recipient == staff.user.email).count() == PasswordLinks.forgotPerDay)
                settings.manualClock.advance(by: PasswordLink.lifetime + 1)
                try await app.testing().test(.POST, "/login/forgot", headers: formHeaders, body: form([("email", staff.user.email)])) { _ in }
                #expect(try await OutboxMessage.query(on: app.db).filter(\.$recipient == staff.user.email).count() == PasswordLinks.forgotPerDay + 1)
            }
        }

        @Test func aNewKeyFileBesideKeysSealedWithAnotherIsRefusedAtStart() async throws {
            try await withDermis { app, settings in
                _ = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let stray = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-new-key-\(UUID().uuidString)").path
                let (_, created) = try SecretBox.load(path: stray)
                #expect(created && FileManager.default.fileExists(atPath: stray))
                await #expect(throws: SecretKeyFileError.self) {
                    try await SecondFactor.sealStoredKeys(on: app, keyWasCreated: true, keyPath: stray)
                }
                #expect(!FileManager.default.fileExists(atPath: stray), "the stray key is removed, so the next start asks again")
                // The existing key file is read, not replaced.
                #expect(try SecretBox.load(path: settings.secretKeyPath).created == false)
            }
        }

        @Test func aRightCodeStartsTheCountAgain() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                try await StaffUser.query(on: app.db).filter(\.$id == staff.id).set(\.$totpFailures, to: SecondFactor.lockAfter - 1).update()
                _ = try await signIn(app, staff, clock: settings.clock)
                #expect(try await StaffUser.find(staff.id, on: app.db)?.totpFailures == nil)
                var headers = formHeaders
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    headers.add(name: .cookie, value: sessionCookie(res) ?? "")
                }
                try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", "not-a-code")])) {
                    #expect($0.status == .unauthorized, "one wrong code after a right one does not lock")
                }
            }
        }

        @Test func authenticatorKeysAreStoredEncryptedWithTheKeyFile() async throws {
            var keyPath = ""
            try await withDermis { app, settings in
                keyPath = settings.secretKeyPath
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let stored = try #require(try await StaffUser.find(staff.id, on: app.db)?.totpSecret)
                let plain = try #require(staff.totp?.base32)
                #expect(stored.hasPrefix("v1:") && !stored.contains(plain))
                let mode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
                #expect(mode == 0o600)
                #expect(try app.dermis.secretBox.open(stored) == plain)
                // Another key (a stolen database without its key file) opens nothing.
                let other = SecretBox(key: .init(size: .bits256))
                #expect(throws: SecretBoxError.self) { try other.open(stored) }
                // A key stored before encryption is sealed at the next start.
                try await StaffUser.query(on: app.db).filter(\.$id == staff.id).set(\.$totpSecret, to: plain).update()
                try await SecondFactor.sealStoredKeys(on: app)
                #expect(try await StaffUser.find(staff.id, on: app.db)?.totpSecret?.hasPrefix("v1:") == true)
            }
            #expect(throws: SecretKeyFileError.self) {
                let bad = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-bad-key-\(UUID().uuidString)")
                try Data("not a key".utf8).write(to: bad)
                defer { try? FileManager.default.removeItem(at: bad) }
                _ = try SecretBox.load(path: bad.path)
            }
        }

        /// The set-password link an admin page shows once.
        static func passwordLink(in html: String) -> String {
            guard let start = html.range(of: #"<code id="password-link">"#), let end = html[start.upperBound...].range(of: "</code>") else { return "" }
            return String(html[start.upperBound..<end.lowerBound])
        }
    }
}
