import DermisCore
import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R9, R10, R11: every patient-data access audited (refusals too), the chain tamper-evident, the logs clean.
    @Suite struct Audit {
        /// Each patient-data route, how to call it, and what it must leave in the audit log.
        struct Case: Sendable, CustomStringConvertible {
            let method: HTTPMethod
            let path: @Sendable (UUID) -> String
            let body: [String: String]?
            let json: Bool
            let action: String
            var description: String { "\(method) \(path(UUID(uuidString: "00000000-0000-0000-0000-000000000000")!))" }
        }

        static let cases: [Case] = [
            Case(method: .GET, path: { _ in "/api/v1/patients?q=Lef" }, body: nil, json: true, action: "search"),
            Case(method: .GET, path: { "/api/v1/patients/\($0)" }, body: nil, json: true, action: "read"),
            Case(method: .PUT, path: { "/api/v1/patients/\($0)" }, body: ["givenName": "Zoë", "familyName": "Lefèvre", "dateOfBirth": "1988-03-14"],
                 json: true, action: "update"),
            Case(method: .POST, path: { _ in "/api/v1/patients" }, body: ["givenName": "New", "familyName": "Person", "dateOfBirth": "1990-01-01"],
                 json: true, action: "create"),
            Case(method: .GET, path: { _ in "/patients?q=zoe" }, body: nil, json: false, action: "search"),
            Case(method: .GET, path: { "/patients/\($0)" }, body: nil, json: false, action: "read"),
            Case(method: .GET, path: { "/patients/\($0)/edit" }, body: nil, json: false, action: "read"),
            Case(method: .POST, path: { "/patients/\($0)" }, body: ["givenName": "Zoë", "familyName": "Lefèvre", "dateOfBirth": "1988-03-14", "version": "1"],
                 json: false, action: "update"),
            Case(method: .POST, path: { _ in "/patients" }, body: ["givenName": "New", "familyName": "Person", "dateOfBirth": "1990-01-01"],
                 json: false, action: "create"),
            Case(method: .POST, path: { "/patients/\($0)/archive" }, body: [:], json: false, action: "archive"),
        ]

        private func send(_ app: Application, _ c: Case, id: UUID, headers session: HTTPHeaders) async throws -> HTTPStatus {
            var headers = session
            var body: ByteBuffer?
            if let fields = c.body {
                if c.json {
                    headers.replaceOrAdd(name: .contentType, value: "application/json")
                    body = jsonBody(fields)
                } else {
                    headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                    body = form(fields.sorted { $0.key < $1.key })
                }
            }
            if c.method == .PUT { headers.replaceOrAdd(name: .ifMatch, value: "W/\"1\"") }
            if !headers.contains(name: .origin) { headers.add(contentsOf: sameSite) }
            var status = HTTPStatus.ok
            try await app.testing().test(c.method, c.path(id), headers: headers, body: body) { status = $0.status }
            return status
        }

        private func lastEvent(_ app: Application) async throws -> AuditEvent? {
            try await AuditEvent.query(on: app.db).sort(\.$seq, .descending).first()
        }

        private func zoe(_ app: Application) async throws -> UUID {
            try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!.requireID()
        }

        @Test(arguments: cases.indices)
        func aSuccessfulAccessIsAuditedWithWhoWhatAndWhere(index: Int) async throws {
            let c = Self.cases[index]
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let session = try await signIn(app, staff, clock: settings.clock)
                let id = try await zoe(app)
                let status = try await send(app, c, id: id, headers: session)
                #expect(status.code < 400, "\(c): \(status)")
                let event = try #require(try await lastEvent(app))
                #expect(event.action == c.action && event.outcome == "success", "\(c)")
                #expect(event.actorID == staff.id && event.actorEmail == staff.user.email)
                #expect(event.objectType == "Patient" && !event.sourceIP.isEmpty && !event.at.isEmpty)
                if c.action != "search" { #expect(event.patientID != nil, "\(c) names no patient") }
                if c.action == "read" || c.action == "update" || c.action == "archive" { #expect(event.patientID == id) }
            }
        }

        @Test(arguments: cases.indices)
        func aRefusedAccessIsAuditedToo(index: Int) async throws {
            let c = Self.cases[index]
            try await withDermis { app, _ in
                let id = try await zoe(app)
                let status = try await send(app, c, id: id, headers: sameSite)
                #expect(status == .unauthorized || status == .seeOther, "\(c): \(status)")
                let event = try #require(try await lastEvent(app))
                #expect(event.outcome == "denied" && event.actorID == nil, "\(c)")
            }
        }

        @Test func aMissingPatientIsAuditedAsNotFound() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let ghost = UUID()
                try await app.testing().test(.GET, "/api/v1/patients/\(ghost)", headers: session) { #expect($0.status == .notFound) }
                let event = try #require(try await lastEvent(app))
                #expect(event.outcome == "not-found" && event.objectID == ghost.uuidString && event.action == "read")
            }
        }

        @Test func theChainVerifiesAndRejectsUpdatesAndDeletes() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                for _ in 0..<3 {
                    try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
                }
                #expect(try await AuditLog.firstBreak(on: app.db) == nil)
                let sql = app.db as! any SQLDatabase
                await #expect(throws: (any Error).self) { try await sql.raw("UPDATE audit_event SET outcome = 'success'").run() }
                await #expect(throws: (any Error).self) { try await sql.raw("DELETE FROM audit_event").run() }
                let count = try await AuditEvent.query(on: app.db).count()
                #expect(count >= 4)
            }
        }

        @Test func editingARowByHandBreaksTheChainAtThatRow() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                for _ in 0..<4 {
                    try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
                }
                // Someone with the database file drops the guard and rewrites history.
                let sql = app.db as! any SQLDatabase
                if sql.dialect.name == "sqlite" {
                    try await sql.raw("DROP TRIGGER audit_event_no_update").run()
                } else {
                    try await sql.raw("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change").run()
                }
                try await sql.raw("UPDATE audit_event SET actor_email = 'someone-else@test.example' WHERE seq = 3").run()
                let problem = try #require(try await AuditLog.firstBreak(on: app.db))
                #expect(problem.contains("seq 3") && problem.contains("changed"))
            }
        }

        @Test func concurrentAppendsAreGroupCommittedIntoUnbrokenChainsPerClinic() async throws {
            try await withDermis(seedDemo: false) { app, _ in
                let clinics = [UUID(), UUID(), nil]
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<60 {
                        group.addTask {
                            try await app.auditWriter.append([.init(chainID: clinics[index % 3], at: testNow, action: .read, objectType: "Patient",
                                                                    objectID: "\(index)", outcome: .success, sourceIP: "127.0.0.1")])
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(try await AuditLog.firstBreak(on: app.db) == nil)
                let rows = try await AuditEvent.query(on: app.db).sort(\.$seq).all()
                #expect(rows.count == 60)
                for chain in clinics {
                    let own = rows.filter { $0.chainID == chain }
                    #expect(own.count == 20)
                    #expect(own.first?.prevHash == AuditLog.genesis(chain), "each clinic's chain starts at its own genesis")
                }
                #expect(Set(rows.map(\.seq)).count == 60)
                #expect(app.auditWriter.batches < 60, "concurrent appends shared commits (\(app.auditWriter.batches) for 60 rows)")
            }
        }

        @Test func theAuditPageFiltersByUserPatientAndAction() async throws {
            try await withDermis { app, settings in
                let desk = try await makeStaff(app, role: .frontDesk)
                let deskSession = try await signIn(app, desk, clock: settings.clock)
                let id = try await zoe(app)
                try await app.testing().test(.GET, "/api/v1/patients/\(id)", headers: deskSession) { #expect($0.status == .ok) }
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                try await app.testing().test(.GET, "/admin/audit?user=\(desk.user.email)&patient=\(id)&action=read", headers: admin) { res in
                    #expect(res.status == .ok)
                    let rows = res.body.string.components(separatedBy: "<tr><td>").count - 1
                    #expect(rows == 1)
                    #expect(res.body.string.contains(desk.user.email) && res.body.string.contains(id.uuidString))
                }
                try await app.testing().test(.GET, "/admin/audit?action=update", headers: admin) { res in
                    #expect(res.body.string.components(separatedBy: "<tr><td>").count - 1 == 0)
                }
            }
        }
    }

    /// R11 and R18: a canary patient's details, passwords and session ids never reach the operational log,
    /// and a 500 tells the client nothing.
    @Suite struct Logs {
        @Test func noPatientDataPasswordsOrSessionIdsReachTheLogs() async throws {
            let marker = "Qzxcanary\(Int.random(in: 100_000...999_999))"
            try await withDermis { app, settings in
                let password = "canary-pass-\(marker)"
                let staff = try await makeStaff(app, role: .practitioner, password: password)
                let session = try await signIn(app, staff, clock: settings.clock)
                let cookie = session.first(name: .cookie) ?? ""
                let details: [String: Any] = ["givenName": "Given\(marker)", "familyName": "Family\(marker)", "dateOfBirth": "1977-07-07",
                                              "email": "mail\(marker.lowercased())@canary.example", "phone": "+44 7700 912345"]
                var id = ""
                try await app.testing().test(.POST, "/api/v1/patients", headers: json(session), body: jsonBody(details)) { res in
                    #expect(res.status == .created)
                    id = (try? JSONSerialization.jsonObject(with: Data(buffer: res.body)) as? [String: Any])?["id"] as? String ?? ""
                }
                // Reads, searches, a bad edit, a stale edit, a wrong password, a bad form, a missing page.
                try await app.testing().test(.GET, "/api/v1/patients/\(id)", headers: session) { #expect($0.status == .ok) }
                try await app.testing().test(.GET, "/patients?q=Family\(marker)", headers: session) { #expect($0.status == .ok) }
                var stale = json(session)
                stale.add(name: .ifMatch, value: "W/\"9\"")
                try await app.testing().test(.PUT, "/api/v1/patients/\(id)", headers: stale, body: jsonBody(details)) { #expect($0.status == .conflict) }
                var bad = details
                bad["dateOfBirth"] = "2999-01-01"
                bad["email"] = "not-an-email-\(marker)"
                var current = json(session)
                current.add(name: .ifMatch, value: "W/\"1\"")
                try await app.testing().test(.PUT, "/api/v1/patients/\(id)", headers: current, body: jsonBody(bad)) { #expect($0.status == .unprocessableEntity) }
                try await app.testing().test(.POST, "/api/v1/patients", headers: json(session), body: ByteBuffer(string: "{\"givenName\": \"\(marker)")) {
                    #expect($0.status.code >= 400)
                }
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", "wrong-\(marker)")])) { #expect($0.status == .unauthorized) }
                try await app.testing().test(.GET, "/patients/\(UUID())", headers: session) { #expect($0.status == .notFound) }
                let log = TestLog.text
                for line in log.split(separator: "\n") where line.contains(marker) || line.contains("+447700912345") { print("LEAK:", line.prefix(400)) }
                #expect(!log.contains(marker) && !log.contains(marker.lowercased()), "the log holds patient data")
                #expect(!log.contains(password))
                #expect(!log.contains("+447700912345"))
                let cookieValue = cookie.components(separatedBy: "=").last ?? ""
                #expect(cookieValue.count > 20 && !log.contains(cookieValue), "the log holds a session id")
                #expect(!log.isEmpty, "nothing was captured, so this test proves nothing")
            }
        }

        @Test func deeplyNestedFormsAndHugeRangeHeadersGet4xx() async throws {
            try await withDermis { app, _ in
                let nested = "a" + String(repeating: "[b]", count: 2000) + "=1"
                try await app.testing().test(.POST, "/login", headers: formHeaders, body: ByteBuffer(string: nested)) { res in
                    #expect(res.status == .badRequest)
                }
                for range in ["bytes=" + (0..<50).map { "\($0)-\($0)" }.joined(separator: ","), "bytes=0-99999999999999999999999"] {
                    try await app.testing().test(.GET, "/css/dermis.css", headers: ["Range": range]) { res in
                        #expect(res.status == .rangeNotSatisfiable)
                    }
                }
                // Static files come from memory and ignore a plain Range (RFC 9110 §14.2 allows it): the whole file.
                try await app.testing().test(.GET, "/css/dermis.css", headers: ["Range": "bytes=0-99"]) { res in
                    #expect(res.status == .ok && res.headers.first(name: .contentRange) == nil && res.body.readableBytes > 100)
                }
            }
        }

        @Test func aServerErrorSaysNothingAboutItsCause() async throws {
            try await withDermis { app, _ in
                struct Secret: Error, CustomStringConvertible { var description: String { "SELECT * FROM patient -- secret detail" } }
                app.get("boom") { _ -> String in throw Secret() }.access(.open)
                try await app.testing().test(.GET, "/boom") { res in
                    #expect(res.status == .internalServerError)
                    #expect(!res.body.string.contains("SELECT") && !res.body.string.contains("secret"))
                    #expect(res.headers.first(name: "Content-Security-Policy")?.contains("object-src 'none'") == true)
                }
            }
        }
    }
}
