import DermisCore
import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

/// Failures injected where a real one could strike: a trigger that makes the database fail an INSERT into one table
/// (optionally only when an SQL condition on NEW holds), on SQLite and PostgreSQL alike. No hook in the app. The error is
/// a plain runtime error (SQLite: an integer overflow; PostgreSQL: RAISE), not a constraint failure the app might handle.
enum Fault {
    static func failInserts(into table: String, when condition: String? = nil, on db: any Database) async throws {
        let sql = db as! any SQLDatabase
        if sql.dialect.name == "sqlite" {
            try await sql.raw("""
                CREATE TRIGGER fault_\(unsafeRaw: table) BEFORE INSERT ON \(unsafeRaw: table)
                \(unsafeRaw: condition.map { "WHEN \($0)" } ?? "") BEGIN SELECT abs(-9223372036854775808); END
                """).run()
        } else {
            try await sql.raw("""
                CREATE OR REPLACE FUNCTION fault_\(unsafeRaw: table)() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF \(unsafeRaw: condition ?? "true") THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$
                """).run()
            try await sql.raw("""
                CREATE TRIGGER fault_\(unsafeRaw: table) BEFORE INSERT ON \(unsafeRaw: table)
                FOR EACH ROW EXECUTE FUNCTION fault_\(unsafeRaw: table)()
                """).run()
        }
    }

    static func clear(_ table: String, on db: any Database) async throws {
        let sql = db as! any SQLDatabase
        if sql.dialect.name == "sqlite" {
            try await sql.raw("DROP TRIGGER fault_\(unsafeRaw: table)").run()
        } else {
            try await sql.raw("DROP TRIGGER fault_\(unsafeRaw: table) ON \(unsafeRaw: table)").run()
        }
    }
}

extension AppTests {
    /// docs/ARCHITECTURE.md "Writing data": each change and its audit row commit together; multi-step operations are one
    /// transaction; checks and writes are one statement; every patient-data request leaves an audit row.
    @Suite struct UnitOfWork {
        func zoe(_ app: Application) async throws -> Patient {
            try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
        }

        func auditCount(_ app: Application) async throws -> Int { try await AuditEvent.query(on: app.db).count() }

        // MARK: The change and its audit row

        @Test func anAuditRowThatCannotBeWrittenTakesTheChangeWithIt() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await zoe(app)
                try await Fault.failInserts(into: AuditEvent.schema, on: app.db)
                var headers = json(session)
                headers.add(name: .ifMatch, value: "W/\"1\"")
                let edit = jsonBody(["givenName": "Changed", "familyName": "Lefèvre", "dateOfBirth": "1988-03-14"])
                try await app.testing().test(.PUT, "/api/v1/patients/\(zoe.id!)", headers: headers, body: edit) { res in
                    #expect(res.status == .internalServerError)
                }
                try await Fault.clear(AuditEvent.schema, on: app.db)
                let after = try await self.zoe(app)
                #expect(after.givenName == zoe.givenName && after.version == 1, "the edit rolled back with its audit row")
            }
        }

        @Test func aRefusalWhoseAuditRowCannotBeWrittenFailsLoudly() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                try await Fault.failInserts(into: AuditEvent.schema, on: app.db)
                try await app.testing().test(.GET, "/api/v1/patients/\(UUID())", headers: session) { res in
                    #expect(res.status == .internalServerError, "an unaudited 404 would be a silent gap in the log")
                }
                try await Fault.clear(AuditEvent.schema, on: app.db)
            }
        }

        // MARK: Every patient-data route leaves a row

        /// Every registered route that touches patient data, called with an unknown id, another clinic's patient, a role
        /// it refuses and no session: each call leaves an audit row naming what was asked for, with a refusal outcome.
        @Test func everyPatientDataRouteAuditsUnknownForeignForbiddenAndAnonymousCalls() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let other = Clinic(name: "Another Clinic", timeZone: "Europe/Paris", isDemo: false)
                try await other.create(on: app.db)
                let valid = try PatientDetails(givenName: "Other", familyName: "Patient", dateOfBirth: "1990-01-01")
                    .validated(today: CalendarDate(iso: "2026-11-27")!)
                let foreign = try await PatientRegistry(db: app.db, clinicID: other.requireID())
                    .create(valid, by: UUID(), at: testNow).requireID()
                var checked = 0
                for route in app.routes.all {
                    let audits: Bool
                    let roles: Set<StaffRole>
                    switch route.accessRule {
                    case let .staff(allowed, objectType?):
                        audits = !objectType.isEmpty
                        roles = allowed
                    case .patientLink:
                        audits = true
                        roles = []
                    default:
                        continue
                    }
                    guard audits else { continue }
                    let method = route.method
                    func path(patient: UUID) -> String {
                        "/" + route.path.map { component -> String in
                            guard case .parameter(let name) = component else { return component.description }
                            return name == "patientID" ? patient.uuidString : (name == "token" ? String(repeating: "x", count: 43) : UUID().uuidString)
                        }.joined(separator: "/")
                    }
                    func call(_ path: String, _ session: HTTPHeaders) async throws -> HTTPStatus {
                        var headers = json(session)
                        if !headers.contains(name: .origin) { headers.add(contentsOf: sameSite) }
                        headers.replaceOrAdd(name: .ifMatch, value: "W/\"1\"")
                        var status = HTTPStatus.ok
                        let body: ByteBuffer? = [.GET, .HEAD].contains(method) ? nil : ByteBuffer(string: "{}")
                        try await app.testing().test(method, path, headers: headers, body: body) { status = $0.status }
                        return status
                    }
                    func newRows(_ body: () async throws -> HTTPStatus) async throws -> (HTTPStatus, [AuditEvent]) {
                        let before = try await AuditEvent.query(on: app.db).max(\.$seq) ?? 0
                        let status = try await body()
                        return (status, try await AuditEvent.query(on: app.db).filter(\.$seq > before).all())
                    }
                    let named = "\(method) \(route.path.string)"
                    let hasPatient = route.path.contains { if case .parameter("patientID") = $0 { true } else { false } }
                    let hasParameter = route.path.contains { if case .parameter = $0 { true } else { false } }
                    if hasParameter {
                        let (status, rows) = try await newRows { try await call(path(patient: UUID()), admin) }
                        #expect(!rows.isEmpty, "\(named) with an unknown id (\(status)) left no audit row")
                        #expect(status.code < 400 || rows.contains { $0.outcome != "success" }, "\(named): \(status) audited as success")
                    }
                    if hasPatient {
                        let (status, rows) = try await newRows { try await call(path(patient: foreign), admin) }
                        #expect(status.code >= 400, "\(named) served another clinic's patient (\(status))")
                        #expect(rows.contains { $0.patientID == foreign && $0.outcome != "success" },
                                "\(named): another clinic's patient (\(status)) left no refusal naming them")
                    }
                    if !roles.isEmpty && !roles.contains(.frontDesk) {
                        let (status, rows) = try await newRows { try await call(path(patient: UUID()), desk) }
                        #expect(status == .forbidden && rows.contains { $0.outcome == "denied" }, "\(named) as the front desk: \(status)")
                    }
                    if !roles.isEmpty {
                        let (status, rows) = try await newRows { try await call(path(patient: UUID()), sameSite) }
                        #expect(rows.contains { $0.outcome == "denied" }, "\(named) with no session (\(status)) left no denial")
                    }
                    checked += 1
                }
                #expect(checked > 40, "the walk found the patient-data routes (\(checked))")
                #expect(try await AuditLog.firstBreak(on: app.db) == nil)
            }
        }

        @Test func theBookingPagesPatientPickerIsAuditedAsASearch() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let before = try await auditCount(app)
                try await app.testing().test(.GET, "/appointments/new", headers: session) { res in
                    #expect(res.status == .ok && res.body.string.contains("Lefèvre"))
                }
                let rows = try await AuditEvent.query(on: app.db).sort(\.$seq).all().dropFirst(before)
                #expect(rows.contains { $0.action == "search" && $0.objectType == "Patient" && $0.outcome == "success" })
            }
        }

        @Test func aConsentRefusedOnThePageIsAuditedAsARefusal() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let session = try await signIn(app, staff, clock: settings.clock)
                let course = Course(app: app, session: session, patientID: try await zoe(app).requireID())
                try await course.intake()
                let planID = try #require(try await course.plan()["planID"] as? String)
                try await app.testing().test(.POST, "/patients/\(course.patientID)/plans/\(planID)/consent", headers: formHeaders.merging(session),
                                             body: form([("typedName", "Somebody Else"), ("signature", "data:image/png;base64,\(tinyPNG)")])) {
                    #expect($0.status == .unprocessableEntity)
                }
                let refusal = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Consent").all()
                #expect(refusal.map(\.outcome) == ["invalid"], "the refused signature is in the log as such")
                #expect(try await ConsentRecord.query(on: app.db).count() == 0)
            }
        }

        // MARK: PostgreSQL: a handled failure leaves the transaction usable

        @Test func aDuplicatePenSerialOnTheAdminPageIsRefusedNamingTheField() async throws {
            try await withDermis { app, settings in
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                let pen = try #require(try await Device.query(on: app.db).first())
                try await app.testing().test(.POST, "/admin/inventory/devices", headers: formHeaders.merging(admin),
                                             body: form([("model", "SkinPen Precision"), ("serial", pen.serial), ("profile", pen.profile)])) { res in
                    #expect(res.status == .unprocessableEntity, "a caught duplicate must not poison the transaction the page renders in")
                    #expect(res.body.string.contains("serial"))
                }
                #expect(try await Device.query(on: app.db).count() == 1)
                try await app.testing().test(.POST, "/admin/schedule/rooms", headers: formHeaders.merging(admin),
                                             body: form([("location", try await Location.query(on: app.db).first()!.id!.uuidString),
                                                         ("name", try await Room.query(on: app.db).first()!.name)])) { res in
                    #expect(res.status == .conflict || res.status == .unprocessableEntity, "\(res.status)")
                }
            }
        }

        // MARK: Multi-step operations are one transaction

        /// Zoë's course up to a saved draft chart that is ready to sign; returns the chart id and its version.
        func draftChart(_ app: Application, _ settings: DermisSettings) async throws -> (Course, String, Int) {
            let staff = try await makeStaff(app, role: .practitioner)
            let course = Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: try await zoe(app).requireID())
            try await course.ready()
            let (_, chart, _) = try await course.start()
            let chartID = try #require(chart["chartID"] as? String)
            let (_, numbed, _) = try await course.call(.POST, "/sessions/\(chartID)/numbing", ifMatch: chart["version"] as? Int)
            settings.manualClock.advance(by: 30 * 60)
            let pen = try #require(try await Device.query(on: app.db).first())
            let lot = try #require(try await CartridgeLot.query(on: app.db).filter(\.$lotNumber == "DEMO-LOT-A").first())
            let body: [String: Any] = [
                "identityConfirmed": true, "skinCleansed": true, "deviceID": pen.id!.uuidString, "lotID": lot.id!.uuidString,
                "zones": [["zone": "cheeks", "depthMm": 1.5, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20]],
                "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": false, "notes": "",
            ]
            let (saved, savedBody, text) = try await course.call(.PUT, "/sessions/\(chartID)", body, ifMatch: numbed["version"] as? Int)
            #expect(saved == .ok, "\(text)")
            return (course, chartID, try #require(savedBody["version"] as? Int))
        }

        @Test func aChartIsNeverSignedWithoutItsAftercare() async throws {
            try await withDermis { app, settings in
                let (course, chartID, version) = try await draftChart(app, settings)
                try await Fault.failInserts(into: AftercarePlan.schema, on: app.db)
                #expect(try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: version).0 == .internalServerError)
                try await Fault.clear(AftercarePlan.schema, on: app.db)
                let (_, chart, _) = try await course.call(.GET, "/sessions/\(chartID)")
                #expect(chart["status"] as? String == "draft" && chart["version"] as? Int == version, "the signature rolled back")
                #expect(try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: version).0 == .ok, "and it can be signed now")
                #expect(try await AftercarePlan.query(on: app.db).count() == 1)
            }
        }

        @Test func anAmendmentIsNeverStoredWithoutItsAftercare() async throws {
            try await withDermis { app, settings in
                let signed = try await AppTests.FollowUp().signedSession(app, settings)
                let (_, chart, _) = try await signed.course.call(.GET, "/sessions/\(signed.chartID)")
                let version = try #require(chart["version"] as? Int)
                try await Fault.failInserts(into: AftercarePlan.schema, on: app.db)
                let amendment: [String: Any] = [
                    "reason": "Cheeks were charted deeper than treated", "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": false, "notes": "",
                    "zones": [["zone": "cheeks", "depthMm": 0.5, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20]],
                ]
                let (status, _, text) = try await signed.course.call(.POST, "/sessions/\(signed.chartID)/amendments", amendment, ifMatch: version)
                #expect(status == .internalServerError, "\(text)")
                try await Fault.clear(AftercarePlan.schema, on: app.db)
                let versions = try await TreatmentSession.query(on: app.db).filter(\.$chartID == UUID(uuidString: signed.chartID)!).count()
                #expect(versions == 1, "no amended version without its aftercare")
            }
        }

        @Test func aCheckInThatFailsLeavesNoPhotoBehind() async throws {
            try await withDermis { app, settings in
                let follow = AppTests.FollowUp()
                let signed = try await follow.signedSession(app, settings)
                let link = try await follow.link(signed)
                try await Fault.failInserts(into: CheckIn.schema, on: app.db)
                let (status, _) = try await follow.checkIn(app, link, [("redness", "1"), ("pain", "2"), ("zone", "cheeks"), ("view", "front")],
                                                           file: TestImage.jpeg())
                #expect(status == .internalServerError)
                try await Fault.clear(CheckIn.schema, on: app.db)
                #expect(try await Photo.query(on: app.db).count() == 0)
                let folder = URL(fileURLWithPath: settings.dataDirectory).appendingPathComponent("photos").path
                let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                #expect(files.filter { !$0.hasPrefix(".") }.isEmpty, "the photo's file went with its row: \(files)")
            }
        }

        @Test func anOnlineHoldIsNeverMadeWithoutItsConfirmationMessage() async throws {
            try await withDermis { app, _ in
                let booking = AppTests.Scheduling()
                let location = try #require(try await Location.query(on: app.db).first()?.id)
                let form = booking.publicForm("2026-11-30T09:00:00Z", [("location", location.uuidString)])
                try await Fault.failInserts(into: OutboxMessage.schema, on: app.db)
                let (status, _) = try await booking.post(app, "/book", form)
                #expect(status == .internalServerError)
                try await Fault.clear(OutboxMessage.schema, on: app.db)
                #expect(try await Appointment.query(on: app.db).count() == 0, "no hold that nobody is asked to confirm")
                let (again, text) = try await booking.post(app, "/book", form)
                #expect(again == .created, "\(text)")
                #expect(try await OutboxMessage.query(on: app.db).count() == 1)
            }
        }

        @Test func aNewPatientLinkThatFailsLeavesTheOldOneWorking() async throws {
            try await withDermis { app, settings in
                let follow = AppTests.FollowUp()
                let signed = try await follow.signedSession(app, settings)
                let old = try await follow.link(signed)
                try await Fault.failInserts(into: PatientLink.schema, on: app.db)
                #expect(try await signed.course.call(.POST, "/sessions/\(signed.chartID)/link").0 == .internalServerError)
                try await Fault.clear(PatientLink.schema, on: app.db)
                #expect(try await follow.get(app, old).0 == .ok, "the old link was not withdrawn by the failed issue")
            }
        }

        @Test func aSeriesThatFailsPartWayLeavesNoBookingAndNoAuditedCreation() async throws {
            try await withDermis { app, settings in
                let desk = try await AppTests.Scheduling().desk(app, settings, role: .practitioner)
                let zoe = try await zoe(app)
                try await Course(app: app, session: desk.headers, patientID: zoe.id!).ready()
                let before = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Appointment").filter(\.$outcome == "success").count()
                // The third session's insert fails, after two were written in the same transaction.
                try await Fault.failInserts(into: Appointment.schema,
                                            when: "(SELECT count(*) FROM appointment WHERE series_id = NEW.series_id) >= 2", on: app.db)
                let (status, _, text) = try await desk.call(.POST, "/api/v1/patients/\(zoe.id!)/series",
                                                            ["location": desk.location.uuidString, "service": "treatment", "first": "2026-12-01T09:00:00Z"])
                #expect(status == .internalServerError, "\(text)")
                try await Fault.clear(Appointment.schema, on: app.db)
                #expect(try await Appointment.query(on: app.db).count() == 0, "all or nothing")
                let after = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Appointment").filter(\.$outcome == "success").count()
                #expect(after == before, "no row says a booking was made that does not exist")
                #expect(try await AuditLog.firstBreak(on: app.db) == nil)
            }
        }

        // MARK: A check and its write are one statement

        @Test func twoNumbingStampsFromOneVersionLetExactlyOneIn() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let course = Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: try await zoe(app).requireID())
                try await course.ready()
                let (_, chart, _) = try await course.start()
                let chartID = try #require(chart["chartID"] as? String)
                let version = chart["version"] as? Int
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for _ in 0..<4 { group.addTask { try await course.call(.POST, "/sessions/\(chartID)/numbing", ifMatch: version).0 } }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == .ok }.count == 1 && statuses.filter { $0 == .conflict }.count == 3, "\(statuses)")
                let (_, after, _) = try await course.call(.GET, "/sessions/\(chartID)")
                #expect(after["version"] as? Int == (version ?? 0) + 1)
            }
        }

        /// Four half-signed-in sessions of one person send the same second-factor code at once; the statuses.
        func sendAtOnce(_ app: Application, _ staff: TestStaff, code: String) async throws -> [HTTPStatus] {
            var cookies: [String] = []
            for _ in 0..<4 {
                try await app.testing().test(.POST, "/login", headers: formHeaders,
                                             body: form([("email", staff.user.email), ("password", staff.password)])) { res in
                    cookies.append(sessionCookie(res) ?? "")
                }
            }
            return try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                for cookie in cookies {
                    group.addTask {
                        var headers = formHeaders
                        headers.add(name: .cookie, value: cookie)
                        var status = HTTPStatus.ok
                        try await app.testing().test(.POST, "/login/totp", headers: headers, body: form([("code", code)])) { status = $0.status }
                        return status
                    }
                }
                return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
            }
        }

        @Test func oneAuthenticatorCodeSentTwiceAtOnceOpensOneSession() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let statuses = try await sendAtOnce(app, staff, code: try #require(staff.totp).code(at: settings.clock.now()))
                #expect(statuses.filter { $0 == .seeOther }.count == 1, "one code, one sign-in: \(statuses)")
            }
        }

        @Test func oneRecoveryCodeSentTwiceAtOnceOpensOneSession() async throws {
            try await withDermis { app, _ in
                let staff = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let code = try await SecondFactor.newRecoveryCodes(for: staff.id, on: app.db)[0]
                let statuses = try await sendAtOnce(app, staff, code: code)
                #expect(statuses.filter { $0 == .seeOther }.count == 1, "one recovery code, one sign-in: \(statuses)")
            }
        }

        @Test func archivingFromAStaleVersionIsRefused() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await zoe(app)
                var headers = json(session)
                headers.add(name: .ifMatch, value: "W/\"1\"")
                try await app.testing().test(.PUT, "/api/v1/patients/\(zoe.id!)", headers: headers,
                                             body: jsonBody(["givenName": "Zoé", "familyName": "Lefèvre", "dateOfBirth": "1988-03-14"])) {
                    #expect($0.status == .ok)
                }
                try await app.testing().test(.POST, "/patients/\(zoe.id!)/archive", headers: formHeaders.merging(session),
                                             body: form([("version", "1")])) { #expect($0.status == .conflict) }
                #expect(try await self.zoe(app).archived == false, "the page showed version 1; someone saved version 2")
                try await app.testing().test(.POST, "/patients/\(zoe.id!)/archive", headers: formHeaders.merging(session),
                                             body: form([("version", "2")])) { #expect($0.status == .seeOther) }
                #expect(try await self.zoe(app).archived)
            }
        }

        @Test func aMissingReferencedRowFailsTheRequestNotTheServer() async throws {
            try await withDermis { app, _ in
                let missing = UUID()
                await #expect(throws: DomainError.notFound("A record this page needs is missing (service).")) { _ = try await Service.require(missing, on: app.db) }
                // And the app has no force-unwrapped look-up left to crash on.
                let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("Sources/DermisApp")
                let files = FileManager.default.enumerator(atPath: sources.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
                #expect(files.count > 30)
                for file in files {
                    let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
                    let forced = try Regex(#"\.(find|first)\([^\n]*\)!"#)
                    #expect(text.firstMatch(of: forced) == nil, "\(file) force-unwraps a database look-up")
                }
            }
        }

        // MARK: The chain's head, anchored outside the database

        @Test func removingTheNewestAuditRowsIsFoundAgainstTheCheckpoint() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                for _ in 0..<5 {
                    try await app.testing().test(.GET, "/api/v1/patients", headers: session) { #expect($0.status == .ok) }
                }
                app.auditCheckpoints.flush()
                let checkpoints = try #require(AuditCheckpoints.read(app.auditCheckpoints.path))
                #expect(!checkpoints.isEmpty)
                #expect(try await AuditLog.firstBreak(on: app.db, checkpoints: checkpoints) == nil)
                // Someone with the database drops the guard and deletes the newest two rows: the chain itself still links.
                let sql = app.db as! any SQLDatabase
                if sql.dialect.name == "sqlite" {
                    try await sql.raw("DROP TRIGGER audit_event_no_delete").run()
                } else {
                    try await sql.raw("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change").run()
                }
                let newest = try await AuditEvent.query(on: app.db).sort(\.$seq, .descending).limit(2).all().map(\.seq)
                try await sql.delete(from: AuditEvent.schema).where("seq", .in, newest).run()
                #expect(try await AuditLog.firstBreak(on: app.db) == nil, "without the checkpoint a cut tail is invisible")
                let problem = try #require(try await AuditLog.firstBreak(on: app.db, checkpoints: checkpoints))
                #expect(problem.contains("removed from the end"), "\(problem)")
            }
        }

        @Test func postgresRefusesTruncateAndTheServingRoleCannotChangeTheAuditLog() async throws {
            try await withDermis { app, _ in
                let sql = app.db as! any SQLDatabase
                guard sql.dialect.name == "postgresql" else { return }
                await #expect(throws: (any Error).self) { try await sql.raw("TRUNCATE audit_event").run() }
                // The serving role of docs/SECURITY.md R10: reads and appends, nothing else.
                try await sql.raw("DROP ROLE IF EXISTS dermis_app_test").run()
                try await sql.raw("CREATE ROLE dermis_app_test").run()
                try await sql.raw("GRANT USAGE ON SCHEMA public TO dermis_app_test").run()
                try await sql.raw("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO dermis_app_test").run()
                try await sql.raw("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO dermis_app_test").run()
                try await sql.raw("REVOKE UPDATE, DELETE, TRUNCATE ON audit_event FROM dermis_app_test").run()
                let attempts = [
                    "UPDATE audit_event SET outcome = 'success'", "DELETE FROM audit_event", "TRUNCATE audit_event",
                    "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change", "DROP TRIGGER audit_event_no_change ON audit_event",
                    "DROP TABLE audit_event",
                ]
                try await app.db.withConnection { connection in
                    let sql = connection as! any SQLDatabase
                    try await sql.raw("SET ROLE dermis_app_test").run()
                    for attempt in attempts {
                        await #expect(throws: (any Error).self, "the serving role ran: \(attempt)") { try await sql.raw(SQLQueryString(attempt)).run() }
                    }
                    _ = try await sql.raw("SELECT count(*) FROM audit_event").all()
                    try await sql.raw("RESET ROLE").run()
                }
                try await sql.raw("DROP OWNED BY dermis_app_test").run()
                try await sql.raw("DROP ROLE dermis_app_test").run()
            }
        }
    }
}
