import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R4, R5, R7, R8: sessions, cookies, CSRF, passwords, the sign-in limit and the second factor.
    @Suite struct Sessions {
        @Test func theSessionCookieIsHttpOnlyLaxAndNewAtEverySignIn() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                var cookies: [String] = []
                for _ in 0..<2 {
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                        let header = res.headers[.setCookie].first { $0.contains("dermis_session=") } ?? ""
                        #expect(header.contains("HttpOnly") && header.contains("SameSite=Lax") && header.contains("Path=/"))
                        #expect(!header.contains("Secure"), "plain HTTP in this test")
                        cookies.append(sessionCookie(res) ?? "")
                    }
                }
                #expect(cookies[0] != cookies[1] && !cookies[0].isEmpty)
            }
        }

        @Test func anHTTPSPublicAddressMakesCookiesSecureAndSendsHSTSAndPlainHTTPDoesNot() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, _ in
                let staff = try await makeStaff(app, role: .frontDesk)
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    #expect(res.headers[.setCookie].first?.hasPrefix("__Host-dermis_session=") == true)
                    #expect(res.headers.first(name: "Strict-Transport-Security") == "max-age=31536000; includeSubDomains")
                }
            }
            try await withDermis { app, _ in
                try await app.testing().test(.GET, "/login") { #expect(!$0.headers.contains(name: "Strict-Transport-Security")) }
            }
        }

        @Test func overTLSTheCookieIsSecureWithTheHostPrefix() async throws {
            try await withDermis(change: { $0.secureCookies = true }) { app, _ in
                let staff = try await makeStaff(app, role: .frontDesk)
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    let header = res.headers[.setCookie].first ?? ""
                    #expect(header.hasPrefix("__Host-dermis_session="))
                    #expect(header.contains("Secure") && header.contains("HttpOnly") && header.contains("Path=/"))
                }
            }
        }

        @Test func thirtyOneIdleMinutesEndTheSessionTwentyNineDoNot() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                settings.manualClock.advance(by: 29 * 60)
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
                settings.manualClock.advance(by: 31 * 60)
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
            }
        }

        @Test func noSessionOutlivesTwelveHoursEvenWhenBusy() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                for _ in 0..<(12 * 3) {
                    settings.manualClock.advance(by: 20 * 60)
                    try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
                }
                settings.manualClock.advance(by: 20 * 60)
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
            }
        }

        @Test func timeoutsCanBeShortenedButNotLengthened() {
            #expect(DermisSettings(idleTimeout: 3600).idleTimeout == 30 * 60)
            #expect(DermisSettings(idleTimeout: 600).idleTimeout == 600)
            #expect(DermisSettings(absoluteTimeout: 86400).absoluteTimeout == 12 * 3600)
            #expect(DermisSettings.fromEnvironment(["DERMIS_IDLE_TIMEOUT_MINUTES": "90"]).idleTimeout == 30 * 60)
            #expect(DermisSettings.fromEnvironment(["DERMIS_IDLE_TIMEOUT_MINUTES": "10"]).idleTimeout == 600)
        }

        @Test func signingOutEndsTheSessionOnTheServer() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                try await app.testing().test(.POST, "/logout", headers: session) { #expect($0.status == .seeOther) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
            }
        }

        @Test func deactivationEndsSessionsAndTokensAtOnce() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let session = try await signIn(app, staff, clock: settings.clock)
                let token = try await DermisApp.Sessions.issueToken(for: staff.id, name: "t", days: 30, on: app.db, at: testNow)
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                try await app.testing().test(.POST, "/admin/staff/\(staff.id)/deactivate", headers: admin) { #expect($0.status == .seeOther) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: ["Authorization": "Bearer \(token)"]) {
                    #expect($0.status == .unauthorized)
                }
            }
        }

        @Test(arguments: [
            (["Origin": "https://evil.example", "Host": "localhost"], HTTPStatus.forbidden),
            (["Sec-Fetch-Site": "cross-site", "Origin": "http://localhost", "Host": "localhost"], .forbidden),
            (["Host": "localhost"], .forbidden),
            (["Sec-Fetch-Site": "same-origin"], .seeOther),
            (["Origin": "http://localhost", "Host": "localhost"], .seeOther),
        ])
        func stateChangesNeedASameSiteOrigin(headers: [String: String], expected: HTTPStatus) async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                var request = HTTPHeaders(headers.map { ($0.key, $0.value) })
                request.add(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/login", headers: request,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    #expect(res.status == expected)
                }
            }
        }

        @Test func bearerTokensWorkUntilRevokedOrExpired() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let token = try await DermisApp.Sessions.issueToken(for: staff.id, name: "script", days: 1, on: app.db, at: testNow)
                let bearer: HTTPHeaders = ["Authorization": "Bearer \(token)"]
                try await app.testing().test(.GET, "/api/v1/patients", headers: bearer) { #expect($0.status == .ok) }
                let stored = try await APIToken.query(on: app.db).first()
                #expect(stored?.tokenHash == Secrets.digest(token) && stored?.tokenHash != token)
                settings.manualClock.advance(by: 86400 + 1)
                try await app.testing().test(.GET, "/api/v1/patients", headers: bearer) { #expect($0.status == .unauthorized) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: ["Authorization": "Bearer not-a-token"]) {
                    #expect($0.status == .unauthorized)
                }
            }
        }

        // MARK: Passwords

        @Test func productionHashesAreBcryptCostTwelve() async throws {
            try await withDermis(change: { $0.passwordCost = 12 }) { app, _ in
                let staff = try await makeStaff(app, role: .frontDesk)
                #expect(staff.user.passwordHash.hasPrefix("$2b$12$"))
            }
            #expect(DermisSettings().passwordCost == 12)
        }

        @Test(arguments: [("short77", "at least 8"), (String(repeating: "é", count: 40), "at most 72 bytes"),
                          ("has\u{0}a-nul-inside", "NUL"), (String(repeating: "a", count: 129), "at most 128")])
        func badPasswordsAreRefused(password: String, words: String) {
            #expect(PasswordPolicy.problem(with: password)?.contains(words) == true)
        }

        @Test func longPassphrasesWithoutCompositionRulesAreFine() {
            #expect(PasswordPolicy.problem(with: "correct horse battery staple") == nil)
            #expect(PasswordPolicy.problem(with: "zqkvbemw") == nil, "eight lower-case letters, no rule about kinds of character")
        }

        @Test func passwordsSharingTheirFirst72BytesDoNotCrossVerify() async throws {
            try await withDermis { app, _ in
                let base = String(repeating: "x", count: 72)
                let staff = try await makeStaff(app, role: .frontDesk, password: base)
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", base + "y")])) { res in
                    #expect(res.status == .unauthorized)
                }
            }
        }

        @Test func aHashBelowTheCurrentCostIsRedoneAtSignIn() async throws {
            try await withDermis(change: { $0.passwordCost = 5 }) { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                staff.user.passwordHash = try Bcrypt.hash(staff.password, cost: 4)
                try await staff.user.save(on: app.db)
                _ = try await signIn(app, staff, clock: settings.clock)
                let reloaded = try await StaffUser.find(staff.id, on: app.db)
                #expect(reloaded?.passwordHash.hasPrefix("$2b$05$") == true)
            }
        }

        // MARK: The sign-in limit

        @Test func theHundredAndFirstFailureInAnHourIsRefusedAndLogged() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                for _ in 0..<100 {
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", staff.user.email), ("password", "wrong password")])) { res in
                        #expect(res.status == .unauthorized)
                    }
                }
                // Even the right password is refused now: the account is resting.
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    #expect(res.status == .tooManyRequests)
                }
                #expect(TestLog.text.contains("Sign-in refused: too many failed attempts"))
                settings.manualClock.advance(by: 3601)
                _ = try await signIn(app, staff, clock: settings.clock)
            }
        }

        @Test func theLimitPerAddressCoversManyAccounts() async throws {
            try await withDermis(change: { $0.failuresPerAddressPerHour = 5 }) { app, _ in
                for index in 0..<5 {
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", "nobody\(index)@test.example"), ("password", "wrong password")])) {
                        #expect($0.status == .unauthorized)
                    }
                }
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", "someone-else@test.example"), ("password", "wrong password")])) {
                    #expect($0.status == .tooManyRequests)
                }
            }
        }

        // MARK: The second factor

        @Test func theAuthenticatorMatchesRFC6238() {
            let app = AuthenticatorApp(secret: Array("12345678901234567890".utf8))
            for (seconds, code) in [(59.0, "287082"), (1_111_111_109, "081804"), (1_111_111_111, "050471"),
                                    (1_234_567_890, "005924"), (2_000_000_000, "279037")] {
                #expect(app.code(at: Date(timeIntervalSince1970: seconds)) == code)
            }
        }

        @Test func oneStepOfDriftIsAcceptedTwoAreNot() {
            let app = AuthenticatorApp.generate()
            let code = app.code(at: testNow)
            #expect(app.verify(code, at: testNow.addingTimeInterval(30)))
            #expect(app.verify(code, at: testNow.addingTimeInterval(-30)))
            #expect(!app.verify(code, at: testNow.addingTimeInterval(61)))
            #expect(AuthenticatorApp(base32: app.base32)?.secret == app.secret)
        }

        @Test func anAdminMustEnrolAnAuthenticatorBeforeAnythingElse() async throws {
            try await withDermis { app, settings in
                let admin = try await StaffAccounts.create(.init(email: "new-admin@test.example", name: "New Admin",
                                                                 password: "correct horse battery", role: .admin),
                                                           clinicID: try await Clinic.query(on: app.db).first()!.requireID(),
                                                           createdBy: nil, on: app, db: app.db)
                var cookie = ""
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", admin.email), ("password", "correct horse battery")])) { res in
                    #expect(res.headers.first(name: .location) == "/account/totp")
                    cookie = sessionCookie(res) ?? ""
                }
                var session = sameSite
                session.add(name: .cookie, value: cookie)
                try await app.testing().test(.GET, "/patients", headers: session) { res in
                    #expect(res.headers.first(name: .location) == "/account/totp")
                }
                try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .unauthorized) }
                var secret = ""
                try await app.testing().test(.GET, "/account/totp", headers: session) { res in
                    #expect(res.status == .ok)
                    secret = res.body.string.components(separatedBy: "name=\"secret\" value=\"").dropFirst().first?
                        .components(separatedBy: "\"").first ?? ""
                }
                let stored = try await StaffUser.find(admin.id, on: app.db)
                #expect(stored?.totpSecret == nil, "opening the page stored something")
                let app2fa = try #require(AuthenticatorApp(base32: secret))
                var post = session
                post.add(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/account/totp", headers: post,
                                             body: form([("secret", secret), ("code", "123456" == app2fa.code(at: settings.clock.now()) ? "654321" : "123456")])) { res in
                    #expect(res.status == .unprocessableEntity)
                }
                let code = app2fa.code(at: settings.clock.now())
                try await app.testing().test(.POST, "/account/totp", headers: post, body: form([("secret", secret), ("code", code)])) { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains("id=\"recovery-codes\""))
                    cookie = sessionCookie(res) ?? ""
                }
                var full = sameSite
                full.add(name: .cookie, value: cookie)
                try await app.testing().test(.GET, "/api/v1/patients", headers: full) { #expect($0.status == .ok) }
                let recoveryCodes = try await RecoveryCode.query(on: app.db).filter(\.$user.$id == admin.requireID()).count()
                #expect(recoveryCodes == 10)
            }
        }

        @Test func aCodeWorksOnceEvenWithinItsThirtySeconds() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let code = staff.totp!.code(at: settings.clock.now())
                func attempt() async throws -> HTTPStatus {
                    var cookie = ""
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", staff.user.email), ("password", staff.password)])) { cookie = sessionCookie($0) ?? "" }
                    var headers = formHeaders
                    headers.add(name: .cookie, value: cookie)
                    var status = HTTPStatus.ok
                    try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", code)])) { status = $0.status }
                    return status
                }
                #expect(try await attempt() == .seeOther)
                #expect(try await attempt() == .unauthorized, "a replayed code was accepted")
                settings.manualClock.advance(by: 30)
                let next = staff.totp!.code(at: settings.clock.now())
                #expect(next != code)
            }
        }

        @Test func failuresOlderThanADayArePruned() async throws {
            try await withDermis { app, settings in
                try await SignInFailure(email: "old@test.example", address: "x", at: testNow.addingTimeInterval(-2 * 86400)).create(on: app.db)
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", "new@test.example"), ("password", "wrong password")])) { #expect($0.status == .unauthorized) }
                let emails = try await SignInFailure.query(on: app.db).all().map(\.email)
                #expect(emails == ["new@test.example"])
            }
        }

        @Test func theFirstRunPageIsOnlyForThisMachine() async throws {
            // In-process requests come from no network address at all: not loopback, so refused.
            try await withDermis(seedDemo: false) { app, _ in
                try await app.testing().test(.GET, "/setup") { #expect($0.status == .notFound) }
            }
        }

        @Test func aWrongCodeKeepsTheDoorShutAndARecoveryCodeOpensItOnce() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let codes = try await SecondFactor.newRecoveryCodes(for: staff.id, on: app.db)
                func attempt(_ code: String) async throws -> HTTPStatus {
                    var cookie = ""
                    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                                 body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                        #expect(res.headers.first(name: .location)?.hasPrefix("/login/totp") == true)
                        cookie = sessionCookie(res) ?? ""
                    }
                    var headers = formHeaders
                    headers.add(name: .cookie, value: cookie)
                    var status = HTTPStatus.ok
                    try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", code)])) { status = $0.status }
                    // Part-signed-in, the session reaches nothing.
                    try await app.testing().test(.GET, "/api/v1/patients", headers: headers) { res in
                        #expect(res.status == .unauthorized)
                    }
                    return status
                }
                #expect(try await attempt("000000") == .unauthorized)
                #expect(try await attempt(codes[0]) == .seeOther)
                #expect(try await attempt(codes[0]) == .unauthorized)
            }
        }
    }
}
