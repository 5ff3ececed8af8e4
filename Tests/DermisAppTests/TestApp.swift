import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// The instant every app test starts at: 2026-11-27 10:00 UTC.
let testNow = Date(timeIntervalSince1970: 1_795_773_600)

/// Runs `test` against the real wiring on a real database: a fresh SQLite file in a temporary data dir,
/// or, when DATABASE_URL is set, that PostgreSQL database reset to an empty schema. The clock is a
/// `ManualClock` the test can move; bcrypt runs at cost 4 so sign-ins are fast (production is 12, tested apart).
func withDermis(seedDemo: Bool = true, protocolFile: String? = nil, change: (inout DermisSettings) -> Void = { _ in },
                _ test: (Application, DermisSettings) async throws -> Void) async throws {
    TestLog.bootstrapOnce()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    var settings = DermisSettings.fromEnvironment()
    settings.dataDirectory = directory.path
    settings.protocolFile = protocolFile
    settings.clock = ManualClock(testNow)
    settings.passwordCost = 4
    // Tests on PostgreSQL share one database, so they share its secret key file too, as a chain's servers do.
    if settings.databaseURL != nil {
        settings.secretKeyFile = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-postgres-tests.key").path
    }
    change(&settings)
    try await withApp { app in
        try await configure(app, settings: settings)
        if settings.databaseURL != nil {
            try await app.autoRevert()
            try await app.autoMigrate()
        }
        // The demo's staff, pen, lots and four patients without their history: tests start from a known, empty course.
        if seedDemo { _ = try await DemoClinic.seedIfEmpty(app: app, history: false) }
        try await test(app, settings)
    }
}

extension DermisSettings {
    var manualClock: ManualClock { clock as! ManualClock }
}

/// Tests of one database's own behaviour: reported as skipped on the other database, never passed there without a check.
let sqliteOnly: ConditionTrait = .enabled(if: DermisSettings.fromEnvironment().databaseURL == nil, "SQLite only")
let postgresOnly: ConditionTrait = .enabled(if: DermisSettings.fromEnvironment().databaseURL != nil, "PostgreSQL only")

/// A URL-encoded form body.
func form(_ fields: [(String, String)]) -> ByteBuffer {
    var components = URLComponents()
    components.queryItems = fields.map { URLQueryItem(name: $0.0, value: $0.1) }
    let body = components.percentEncodedQuery!.replacingOccurrences(of: "+", with: "%2B")
    return ByteBuffer(string: body)
}

/// What a same-site browser form post carries.
let sameSite: HTTPHeaders = ["Origin": "http://localhost", "Host": "localhost"]
let formHeaders: HTTPHeaders = ["Content-Type": "application/x-www-form-urlencoded", "Origin": "http://localhost", "Host": "localhost"]

/// A staff member made for a test, with the password and (for TOTP users) the authenticator.
struct TestStaff {
    let user: StaffUser
    let password: String
    let totp: AuthenticatorApp?
    var id: UUID { user.id! }
}

/// Creates a staff member in the first clinic (or `clinicID`), optionally with an authenticator already on.
func makeStaff(_ app: Application, role: StaffRole, email: String? = nil, password: String = "correct horse battery",
               withTOTP: Bool = false, clinicID: UUID? = nil) async throws -> TestStaff {
    let clinic: UUID
    if let clinicID { clinic = clinicID } else { clinic = try await Clinic.query(on: app.db).sort(\.$createdAt).first()!.requireID() }
    let user = try await StaffAccounts.create(
        .init(email: email ?? "\(role.rawValue)-\(UUID().uuidString.prefix(8))@test.example", name: "Test \(role.displayName)",
              password: password, role: role, maxDepthMm: role == .practitioner ? 1.5 : nil),
        clinicID: clinic, createdBy: nil, on: app, db: app.db)
    var totp: AuthenticatorApp?
    if withTOTP || role == .admin {
        let generated = AuthenticatorApp.generate()
        try user.setAuthenticator(generated, app.dermis.secretBox)
        try await user.save(on: app.db)
        totp = generated
    }
    return TestStaff(user: user, password: password, totp: totp)
}

/// Signs in through the real pages (password, then the code when needed); returns the session cookie header.
func signIn(_ app: Application, _ staff: TestStaff, clock: any Clock) async throws -> HTTPHeaders {
    var cookie = ""
    try await app.testing().test(.POST, "/login", headers: formHeaders,
                                 body: form([("email", staff.user.email), ("password", staff.password)])) { res in
        #expect(res.status == .seeOther, "sign-in failed: \(res.status)")
        cookie = sessionCookie(res) ?? ""
    }
    if let totp = staff.totp {
        var headers = formHeaders
        headers.add(name: .cookie, value: cookie)
        try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", totp.code(at: clock.now()))])) { res in
            #expect(res.status == .seeOther, "second factor failed: \(res.status)")
            cookie = sessionCookie(res) ?? ""
        }
    }
    var headers = sameSite
    headers.add(name: .cookie, value: cookie)
    return headers
}

/// `name=value` of the session cookie a response sets.
func sessionCookie(_ res: TestingHTTPResponse) -> String? {
    res.headers[.setCookie].first { $0.contains("dermis_session=") }?.components(separatedBy: ";").first
}

/// Headers for a JSON call with a session.
func json(_ session: HTTPHeaders) -> HTTPHeaders {
    var headers = session
    headers.replaceOrAdd(name: .contentType, value: "application/json")
    return headers
}

func jsonBody(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(data: try! JSONSerialization.data(withJSONObject: object))
}

/// App tests share one PostgreSQL database when DATABASE_URL is set, so they run one at a time.
@Suite(.serialized) struct AppTests {}

/// The one typed way app tests call the JSON API: a body as JSON, `If-Match` when given; the status, the decoded JSON
/// and the text back.
struct TestClient {
    let app: Application
    let headers: HTTPHeaders

    struct Reply {
        let status: HTTPStatus
        let json: Any?
        let text: String
        /// The JSON object answered, or empty.
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    func send(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil, ifMatch: Int? = nil,
              rawBody: ByteBuffer? = nil, extraHeaders: HTTPHeaders = [:]) async throws -> Reply {
        var headers = json(self.headers)
        if let ifMatch { headers.add(name: .ifMatch, value: "W/\"\(ifMatch)\"") }
        for (name, value) in extraHeaders { headers.replaceOrAdd(name: name, value: value) }
        var reply = Reply(status: .ok, json: nil, text: "")
        try await app.testing().test(method, path, headers: headers, body: rawBody ?? body.map(jsonBody)) { res in
            reply = Reply(status: res.status, json: try? JSONSerialization.jsonObject(with: Data(buffer: res.body)), text: res.body.string)
        }
        return reply
    }
}
