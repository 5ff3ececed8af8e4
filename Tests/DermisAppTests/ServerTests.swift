import DermisCore
import Fluent
import Foundation
import LeafKit
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    @Suite struct Server {
        @Test func healthzAnswersOkOnceTheDatabaseDoes() async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.GET, "/healthz") { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string == "ok")
                }
            }
        }

        @Test func theHomePageShowsTheClinicTheDemoBadgeAndTheProtocolVersion() async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.GET, "/") { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains(DemoClinic.name))
                    #expect(res.body.string.contains("id=\"demo-badge\""))
                    #expect(res.body.string.contains(ClinicalProtocol.bundled.version))
                }
            }
        }

        @Test func withoutAClinicTheHomePageSaysHowToMakeOne() async throws {
            try await withDermis(seedDemo: false) { app, _ in
                try await app.testing().test(.GET, "/") { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains("dermis demo"))
                    #expect(!res.body.string.contains("id=\"demo-badge\""))
                }
            }
        }

        @Test func theDemoIsSeededOnce() async throws {
            try await withDermis { app, _ in
                let seededAgain = !(try await DemoClinic.seedIfEmpty(app: app).isEmpty)
                let clinics = try await Clinic.query(on: app.db).count()
                #expect(!seededAgain)
                #expect(clinics == 1)
            }
        }

        @Test(arguments: ["/", "/healthz", "/login", "/plan", "/no-such-page"])
        func everyResponseCarriesTheSecurityHeaders(path: String) async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.GET, path) { res in
                    let csp = res.headers.first(name: "Content-Security-Policy") ?? ""
                    for directive in ["object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"] {
                        #expect(csp.contains(directive), "\(path) lacks \(directive)")
                    }
                    #expect(res.headers.first(name: "X-Content-Type-Options") == "nosniff")
                    #expect(res.headers.first(name: "Referrer-Policy") == "no-referrer")
                    #expect(res.headers.first(name: .cacheControl) == "no-store")
                }
            }
        }

        @Test(sqliteOnly) func theSQLiteDatabaseRunsDurable() async throws {
            try await withDermis { app, settings in
                let sql = try #require(app.db as? any SQLDatabase)
                let mode = try await sql.raw("PRAGMA journal_mode").first()?.decode(column: "journal_mode", as: String.self)
                let synchronous = try await sql.raw("PRAGMA synchronous").first()?.decode(column: "synchronous", as: Int.self)
                let foreignKeys = try await sql.raw("PRAGMA foreign_keys").first()?.decode(column: "foreign_keys", as: Int.self)
                #expect(mode == "wal" && synchronous == 2 && foreignKeys == 1)
                #expect(FileManager.default.fileExists(atPath: settings.dataDirectory + "/" + DatabaseSetup.sqliteFileName))
            }
        }

        @Test(postgresOnly) func thePostgreSQLDatabaseRunsDurable() async throws {
            try await withDermis { app, settings in
                let sql = try #require(app.db as? any SQLDatabase)
                for name in Durability.postgresSettings {
                    let value = try await sql.raw("SHOW \(unsafeRaw: name)").first()?.decode(column: name, as: String.self)
                    #expect(value == "on", "\(name)")
                }
            }
        }

        @Test func aDatabaseThatCouldLoseWritesIsRefused() {
            #expect(throws: Durability.Refusal.self) { try Durability.checkSQLite(journalMode: "delete", synchronous: 2, foreignKeys: 1) }
            #expect(throws: Durability.Refusal.self) { try Durability.checkSQLite(journalMode: "wal", synchronous: 1, foreignKeys: 1) }
            #expect(throws: Durability.Refusal.self) { try Durability.checkSQLite(journalMode: "wal", synchronous: 2, foreignKeys: 0) }
            #expect(throws: Never.self) { try Durability.checkSQLite(journalMode: "WAL", synchronous: 2, foreignKeys: 1) }
            let on = Dictionary(uniqueKeysWithValues: Durability.postgresSettings.map { ($0, "on") })
            #expect(throws: Never.self) { try Durability.checkPostgres(on) }
            for name in Durability.postgresSettings {
                var off = on
                off[name] = "off"
                #expect(throws: Durability.Refusal.self) { try Durability.checkPostgres(off) }
            }
        }

        @Test func anInvalidProtocolOverrideStopsTheServerNamingTheField() async throws {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("protocol-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: file) }
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: ClinicalProtocol.bundledURL)) as! [String: Any]
            object["anaesthetic"] = ["minimumMinutes": -5, "source": "test"]
            try JSONSerialization.data(withJSONObject: object).write(to: file)
            var settings = DermisSettings()
            settings.protocolFile = file.path
            do {
                _ = try settings.loadProtocol()
                Issue.record("an invalid override was accepted")
            } catch let error as ProtocolFileError {
                #expect(error.description.contains("anaesthetic.minimumMinutes: must not be negative"))
                #expect(error.description.contains(file.path))
            }
        }

        @Test func aValidProtocolOverrideIsTheOneInForce() async throws {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("protocol-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: file) }
            var override = ClinicalProtocol.bundled
            override.version = "clinic-override-7"
            try ContractJSON.encode(override).write(to: file)
            try await withDermis(protocolFile: file.path) { app, _ in
                try await app.testing().test(.GET, "/") { res in
                    #expect(res.body.string.contains("clinic-override-7"))
                }
            }
        }
    }
}

extension AppTests.Server {
    /// Static files come from memory: the page links a fingerprinted address cached for a year; the plain address
    /// revalidates with its ETag; a changed fingerprint or an unknown file is 404; no patient page is ever cached.
    @Test func staticFilesAreCachedByFingerprintAndRevalidatedByETag() async throws {
        try await withDermis { app, _ in
            var link = ""
            try await app.testing().test(.GET, "/login") { res in
                link = res.body.string.range(of: #"/assets/[0-9a-f]{16}/css/dermis\.css"#, options: .regularExpression)
                    .map { String(res.body.string[$0]) } ?? ""
                #expect(res.headers.first(name: .cacheControl) == "no-store")
            }
            #expect(!link.isEmpty, "the page links the fingerprinted stylesheet")
            var etag = ""
            try await app.testing().test(.GET, link) { res in
                #expect(res.status == .ok && res.headers.contentType?.subType == "css")
                #expect(res.headers.first(name: .cacheControl) == "public, max-age=31536000, immutable")
                etag = res.headers.first(name: .eTag) ?? ""
                #expect(res.headers.first(name: "Content-Security-Policy") != nil, "security headers on static files too")
            }
            try await app.testing().test(.GET, "/css/dermis.css") { res in
                #expect(res.status == .ok && res.headers.first(name: .cacheControl) == "no-cache" && res.headers.first(name: .eTag) == etag)
            }
            try await app.testing().test(.GET, "/css/dermis.css", headers: ["If-None-Match": etag]) { res in
                #expect(res.status == .notModified && res.body.readableBytes == 0)
            }
            let stale = link.replacingOccurrences(of: #"/assets/[0-9a-f]{16}/"#, with: "/assets/0000000000000000/", options: .regularExpression)
            for path in [stale, "/assets/", "/css/missing.css", "/assets/\(link.split(separator: "/")[1])/../../Package.swift"] {
                try await app.testing().test(.GET, path) { res in #expect(res.status == .notFound, "\(path)") }
            }
        }
    }
}

/// Templates are read and parsed once, in the environment `dermis serve` runs in ("development", Vapor's default); with
/// `DERMIS_RELOAD_TEMPLATES=1` they are read on every render, for whoever edits them.
extension AppTests.Server {
    /// Counts what the template files are asked for.
    final class CountingSource: LeafSource, @unchecked Sendable {
        let wrapped: any LeafSource
        private let lock = NSLock()
        private var reads = 0
        init(_ wrapped: any LeafSource) { self.wrapped = wrapped }
        var count: Int { lock.withLock { reads } }
        func file(template: String, escape: Bool, on eventLoop: any EventLoop) throws -> EventLoopFuture<ByteBuffer> {
            lock.withLock { reads += 1 }
            return try wrapped.file(template: template, escape: escape, on: eventLoop)
        }
    }

    @Test(arguments: [false, true])
    func templatesAreReadOnceUnlessReloadingIsAskedFor(reload: Bool) async throws {
        try await withDermis(change: { $0.reloadTemplates = reload }) { app, _ in
            app.environment = .development
            let views = resourcesPath("Views")
            let source = CountingSource(NIOLeafFiles(fileio: app.fileio, limits: [.toSandbox, .requireExtensions],
                                                     sandboxDirectory: views, viewDirectory: views))
            app.leaf.sources = .singleSource(source)
            try await app.testing().test(.GET, "/login") { res in #expect(res.status == .ok) }
            let first = source.count
            #expect(first >= 2, "the sign-in page and the layout it extends are read")
            for _ in 0..<3 {
                try await app.testing().test(.GET, "/login") { res in #expect(res.status == .ok) }
            }
            #expect(source.count == (reload ? first * 4 : first))
        }
    }
}

/// `DERMIS_LOG_FORMAT=json`: one JSON object a line, with the request id, behind the same patient-data filter.
@Suite struct JSONLogTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ line: String) { lock.withLock { lines.append(line) } }
        var all: [String] { lock.withLock { lines } }
    }

    @Test func eachEventIsOneJSONLineWithItsMetadataAndNoPatientData() throws {
        let lines = Lines()
        var logger = Logger(label: "dermis.test") { label in
            PatientSafeLogHandler(wrapping: JSONLogHandler(label: label, write: { lines.append($0) }))
        }
        logger.logLevel = .debug
        logger.info("GET /care/secret-token-123", metadata: ["request-id": "r-1"])
        logger.debug("Running query", metadata: ["binds": ["Zoë", "1988-03-14"], "request-id": "r-2"])
        logger.warning("Message \"not\" sent\nsecond line")
        #expect(lines.all.count == 3 && lines.all.allSatisfy { $0.hasSuffix("\n") && $0.dropLast().allSatisfy { $0 != "\n" } })
        let objects = try lines.all.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects[0]["message"] as? String == "GET /care/[token]" && objects[0]["level"] as? String == "info")
        #expect((objects[0]["metadata"] as? [String: Any])?["request-id"] as? String == "r-1")
        #expect((objects[1]["metadata"] as? [String: Any])?["binds"] as? String == "[redacted]")
        #expect(!lines.all.joined().contains("Zoë") && !lines.all.joined().contains("secret-token"))
        #expect(objects[2]["message"] as? String == "Message \"not\" sent\nsecond line" && (objects[2]["source"] as? String)?.contains(".swift:") == true)
        #expect(objects.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true && $0["label"] as? String == "dermis.test" })
    }
}

extension AppTests.Server {
    /// Each request is logged once with its route's pattern, status and time — never the path, which can carry tokens.
    @Test func eachRequestIsLoggedByItsPatternNotItsPath() async throws {
        try await withDermis { app, _ in
            let id = UUID().uuidString
            try await app.testing().test(.GET, "/api/v1/patients/\(id)") { res in #expect(res.status == .unauthorized) }
            let lines = TestLog.text.split(separator: "\n").filter { $0.contains("GET /api/v1/patients/:patientID 401 ") }
            #expect(!lines.isEmpty && lines.allSatisfy { $0.contains(" ms") })
            #expect(!TestLog.text.contains(id), "the path's id is not logged")
        }
    }
}

extension AppTests.Server {
    /// `/metrics`: absent unless a token is set, refused without it; requests by route pattern (never an id), sign-in
    /// failures, 429s, the outbox read when scraped.
    @Test func metricsAreForTheScraperWithTheTokenAndNameNoPatient() async throws {
        try await withDermis { app, _ in
            try await app.testing().test(.GET, "/metrics") { #expect($0.status == .notFound, "no token set: no page") }
        }
        try await withDermis(change: { $0.metricsToken = "scrape-me" }) { app, settings in
            try await app.testing().test(.GET, "/metrics") { #expect($0.status == .unauthorized) }
            try await app.testing().test(.GET, "/metrics", headers: ["Authorization": "Bearer scrape-mE"]) { #expect($0.status == .unauthorized) }
            let id = UUID().uuidString
            try await app.testing().test(.GET, "/healthz") { #expect($0.status == .ok) }
            try await app.testing().test(.GET, "/api/v1/patients/\(id)") { #expect($0.status == .unauthorized) }
            let staff = try await makeStaff(app, role: .frontDesk)
            try await app.testing().test(.POST, "/login", headers: formHeaders, body: form([("email", staff.user.email), ("password", "wrong password")])) { _ in }
            let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
            try await OutboxMessage(clinicID: clinic, recipient: "a@example.test", subject: "s", body: "b", kind: "test", at: settings.clock.now()).create(on: app.db)
            // Written a day ago but held for another hour (a retry's backoff): not yet due, so not counted as waiting.
            let held = OutboxMessage(clinicID: clinic, recipient: "b@example.test", subject: "s", body: "b", kind: "test",
                                     at: settings.clock.now().addingTimeInterval(-86_400))
            held.status = OutboxStatus.retry.rawValue
            held.notBefore = settings.clock.now().addingTimeInterval(3600)
            try await held.create(on: app.db)
            settings.manualClock.advance(by: 120)
            var text = ""
            try await app.testing().test(.GET, "/metrics", headers: ["Authorization": "Bearer scrape-me"]) { res in
                #expect(res.status == .ok && res.headers.contentType?.subType == "plain")
                text = res.body.string
            }
            #expect(text.contains(#"dermis_http_requests_total{method="GET",route="/healthz",status="200"} 1"#))
            #expect(text.contains(#"route="/api/v1/patients/:patientID",status="401""#) && !text.contains(id), "the pattern, never the id")
            #expect(text.contains(#"dermis_http_request_duration_seconds_bucket{"#))
            #expect(text.contains("dermis_sign_in_failures_total 1"))
            #expect(text.contains(#"dermis_outbox_messages{status="queued"} 1"#) && text.contains("dermis_outbox_oldest_due_age_seconds"))
            let age = text.split(separator: "\n").first { $0.hasPrefix("dermis_outbox_oldest_due_age_seconds ") }
            #expect(age.flatMap { Double($0.split(separator: " ")[1]) } == 120, "the queued one's two minutes; the held one is not due")
            #expect(text.contains("dermis_audit_append_duration_seconds_count"))
            let loops = app.eventLoopGroup.makeIterator().reduce(0) { count, _ in count + 1 }
            #expect(text.contains("dermis_database_pool_max_connections \(loops)"))
            let roundTrip = text.split(separator: "\n").first { $0.hasPrefix("dermis_database_round_trip_seconds ") }
            #expect(roundTrip.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 > 0 && $0 < 10 } == true)
        }
    }
}
