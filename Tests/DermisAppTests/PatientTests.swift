import DermisCore
import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// The registry: validation beside the field, accent-blind search, archive not delete, no lost updates (R12).
    @Suite struct Patients {
        private func create(_ app: Application, _ session: HTTPHeaders, _ fields: [String: Any]) async throws -> (HTTPStatus, [String: Any]) {
            let reply = try await TestClient(app: app, headers: session).send(.POST, "/api/v1/patients", fields)
            return (reply.status, reply.object)
        }

        @Test func aCreatedPatientHasARecordNumberVersionAndLocation() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                try await app.testing().test(.POST, "/api/v1/patients", headers: json(session),
                                             body: jsonBody(["givenName": " Ana ", "familyName": "Souza", "dateOfBirth": "1991-05-05",
                                                             "phone": "+55 (11) 91234-5678", "email": "Ana@Example.COM", "fitzpatrickType": 4])) { res in
                    #expect(res.status == .created)
                    #expect(res.headers.first(name: .eTag) == "W/\"1\"")
                    let body = try JSONSerialization.jsonObject(with: Data(buffer: res.body)) as! [String: Any]
                    #expect(res.headers.first(name: .location) == "/api/v1/patients/\(body["id"] as! String)")
                    #expect(body["givenName"] as? String == "Ana" && body["phone"] as? String == "+5511912345678")
                    #expect(body["email"] as? String == "ana@example.com" && (body["mrn"] as? String)?.hasPrefix("DRM-") == true)
                }
            }
        }

        @Test(arguments: [
            ("givenName", "", "is required"),
            ("familyName", "   ", "is required"),
            ("dateOfBirth", "2026-11-28", "must not be in the future"),
            ("dateOfBirth", "1899-12-31", "before 1900"),
            ("dateOfBirth", "1990-02-30", "not a real date"),
            ("email", "ana@", "not an email"),
            ("phone", "07700 900123", "international number"),
            ("phone", "+44 abc", "international number"),
        ])
        func eachBadFieldIsNamed(field: String, value: String, words: String) async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                var fields: [String: Any] = ["givenName": "Ana", "familyName": "Souza", "dateOfBirth": "1991-05-05"]
                fields[field] = value
                let before = try await Patient.query(on: app.db).count()
                let (status, body) = try await create(app, session, fields)
                #expect(status == .unprocessableEntity)
                let error = body["error"] as? [String: Any]
                #expect(error?["field"] as? String == field)
                #expect((error?["message"] as? String)?.contains(words) == true, "\(String(describing: error))")
                #expect(try await Patient.query(on: app.db).count() == before, "something was stored")
            }
        }

        @Test func theBoundaryDatesOfBirthAreAccepted() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                for date in ["2026-11-27", "1900-01-01"] {
                    let (status, _) = try await create(app, session, ["givenName": "A", "familyName": "B", "dateOfBirth": date])
                    #expect(status == .created, "\(date)")
                }
                let (status, body) = try await create(app, session, ["givenName": "A", "familyName": "B", "dateOfBirth": "1990-01-01", "fitzpatrickType": 7])
                #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "fitzpatrickType")
            }
        }

        @Test func malformedJSONAndWrongTypesAreNamed() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                try await app.testing().test(.POST, "/api/v1/patients", headers: json(session), body: ByteBuffer(string: "{\"givenName\": ")) { res in
                    #expect(res.status == .unprocessableEntity)
                    #expect(res.body.string.contains("not valid JSON"))
                }
                let (status, body) = try await create(app, session, ["givenName": "A", "familyName": "B", "dateOfBirth": "1990-01-01", "fitzpatrickType": "IV"])
                #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "fitzpatrickType")
            }
        }

        @Test(arguments: [("zoe", "Lefèvre"), ("ZOË LEFEVRE", "Lefèvre"), ("lefevre zoe", "Lefèvre"), ("alvarez", "Álvarez"),
                          ("1988-03-14", "Lefèvre"), ("+44 7700 900102", "Álvarez"), ("7700900103", "Nwosu")])
        func searchIgnoresCaseAndAccentsAndFindsByDateAndPhone(query: String, finds: String) async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let q = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                try await app.testing().test(.GET, "/api/v1/patients?q=\(q)", headers: session) { res in
                    let patients = (try JSONSerialization.jsonObject(with: Data(buffer: res.body)) as! [String: Any])["patients"] as! [[String: Any]]
                    #expect(patients.map { $0["familyName"] as! String } == [finds], "\(query)")
                }
            }
        }

        /// The trigram index finds any part of three letters or more; it follows renames and phone changes, however
        /// the row was written; a stale or missing index is rebuilt at start, and never shows a wrong patient.
        @Test func searchByPartOfANameUsesTheIndexAndFollowsEveryChange() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let staff = try await makeStaff(app, role: .frontDesk)
                func found(_ q: String) async throws -> [String] {
                    var names: [String] = []
                    try await app.testing().test(.GET, "/api/v1/patients?q=\(q.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                                                 headers: session) { res in
                        let patients = (try JSONSerialization.jsonObject(with: Data(buffer: res.body)) as! [String: Any])["patients"] as! [[String: Any]]
                        names = patients.map { $0["familyName"] as! String }
                    }
                    return names
                }
                #expect(try await found("fèvr") == ["Lefèvre"])
                #expect(try await found("ZO LEF") == ["Lefèvre"])
                #expect(try await found("700900103") == ["Nwosu"])
                #expect(try await found("zz") == [])
                #expect(try await found("100%") == [])
                // Renamed through the registry: the old name no longer finds her, the new one does.
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let registry = PatientRegistry(db: app.db, clinicID: zoe.$clinic.id)
                let renamed = try PatientDetails(givenName: "Zoë", familyName: "Marchetti", dateOfBirth: zoe.dateOfBirth, phone: "+44 7700 900199")
                    .validated(today: CalendarDate(iso: "2026-11-27")!)
                _ = try await registry.update(try zoe.requireID(), with: renamed, expectedVersion: zoe.version, by: staff.id, at: settings.clock.now())
                #expect(try await found("lefevre") == [])
                #expect(try await found("marchett") == ["Marchetti"])
                #expect(try await found("7700900199") == ["Marchetti"])
                #expect(try await found("7700900101") == [])
                guard let sql = app.db as? any SQLDatabase, sql.dialect.name == "sqlite" else { return }
                // SQLite: the plan reads the trigram index, not every patient.
                let plan = try await sql.raw("EXPLAIN QUERY PLAN SELECT patient_id FROM patient_search WHERE search_name LIKE '%marchett%'").all()
                    .map { try $0.decode(column: "detail", as: String.self) }
                #expect(plan.contains { $0.contains("VIRTUAL TABLE INDEX") }, "\(plan)")
                // A row written behind the registry's back (a bulk load) is indexed by the triggers.
                try await sql.raw("UPDATE patient SET search_name = 'amara okonkwo' WHERE family_name = 'Nwosu'").run()
                #expect(try await found("okonk") == ["Nwosu"])
                // An index emptied (or left stale) is rebuilt at start; a stale entry never shows the wrong patient.
                try await sql.raw("DELETE FROM patient_search").run()
                #expect(try await found("marchett") == [])
                try await sql.raw("INSERT INTO patient_search (rowid, patient_id, search_name, phone_e164) SELECT rowid, id, 'decoy', NULL FROM patient WHERE family_name = 'Schmidt'").run()
                #expect(try await found("decoy") == [], "the row itself must match, not only its index entry")
                #expect(try await PatientSearchIndex.ensureComplete(on: app.db))
                #expect(try await !PatientSearchIndex.ensureComplete(on: app.db), "a complete index is left alone")
                #expect(try await found("marchett") == ["Marchetti"])
                #expect(try await found("decoy") == [])
            }
        }

        @Test func searchFindsByEmailAndRecordNumber() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let (_, created) = try await create(app, session, ["givenName": "Mia", "familyName": "Berg", "dateOfBirth": "1990-01-01",
                                                                   "email": "mia.berg@example.com"])
                for q in ["MIA.BERG@example.com", created["mrn"] as! String] {
                    try await app.testing().test(.GET, "/api/v1/patients?q=\(q.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                                                 headers: session) { res in
                        #expect(res.body.string.contains("\"familyName\":\"Berg\""), "\(q)")
                    }
                }
            }
        }

        @Test func anArchivedPatientLeavesSearchesButIsNeverDeleted() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                try await app.testing().test(.POST, "/patients/\(zoe.id!)/archive", headers: session) { #expect($0.status == .seeOther) }
                try await app.testing().test(.GET, "/api/v1/patients?q=zoe", headers: session) { #expect(!$0.body.string.contains("Lef")) }
                try await app.testing().test(.GET, "/api/v1/patients?q=zoe&archived=true", headers: session) { res in
                    #expect(res.body.string.contains("\"archived\":true"))
                }
                try await app.testing().test(.GET, "/api/v1/patients/\(zoe.id!)", headers: session) { #expect($0.status == .ok) }
                // The one DELETE cancels a bulk export request (the Bulk Data IG's way); no route deletes a record.
                let routes = app.routes.all.filter { $0.method == .DELETE }.map { "/" + $0.path.map(\.description).joined(separator: "/") }
                #expect(routes == ["/fhir/bulk/:jobID"], "no route deletes a record")
            }
        }

        // MARK: No lost updates

        @Test func anEditWithoutIfMatchIsRefused() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                try await app.testing().test(.PUT, "/api/v1/patients/\(zoe.id!)", headers: json(session),
                                             body: jsonBody(["givenName": "Z", "familyName": "L", "dateOfBirth": "1988-03-14"])) { res in
                    #expect(res.status == .preconditionRequired)
                }
            }
        }

        @Test func twoSavesFromTheSameVersionExactlyOneWins() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                var headers = json(session)
                headers.add(name: .ifMatch, value: "W/\"1\"")
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for name in ["First", "Second"] {
                        let h = headers
                        group.addTask {
                            var status = HTTPStatus.ok
                            try await app.testing().test(.PUT, "/api/v1/patients/\(zoe.id!)", headers: h,
                                                         body: jsonBody(["givenName": name, "familyName": "Lefèvre", "dateOfBirth": "1988-03-14"])) {
                                status = $0.status
                            }
                            return status
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(statuses.sorted { $0.code < $1.code } == [.ok, .conflict])
                let saved = try await Patient.find(zoe.id, on: app.db)!
                #expect(saved.version == 2 && ["First", "Second"].contains(saved.givenName))
            }
        }

        @Test func aStaleFormShowsBothVersionsAndChangesNothing() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                var headers = session
                headers.add(name: .contentType, value: "application/x-www-form-urlencoded")
                let fields: (String) -> [(String, String)] = { given in
                    [("givenName", given), ("familyName", "Lefèvre"), ("dateOfBirth", "1988-03-14"), ("phone", "+44 7700 900101"), ("version", "1")]
                }
                try await app.testing().test(.POST, "/patients/\(zoe.id!)", headers: headers, body: form(fields("Zoé"))) {
                    #expect($0.status == .seeOther)
                }
                try await app.testing().test(.POST, "/patients/\(zoe.id!)", headers: headers, body: form(fields("Zoey"))) { res in
                    #expect(res.status == .conflict)
                    #expect(res.body.string.contains("Zoey") && res.body.string.contains("Zoé"))
                    #expect(res.body.string.contains("id=\"conflict\""))
                }
                let saved = try await Patient.find(zoe.id, on: app.db)!
                #expect(saved.givenName == "Zoé" && saved.version == 2)
            }
        }

        @Test func aFormErrorStandsBesideItsField() async throws {
            try await withDermis { app, settings in
                var headers = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                headers.add(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/patients", headers: headers,
                                             body: form([("givenName", "Ana"), ("familyName", ""), ("dateOfBirth", "2030-01-01"), ("email", "x")])) { res in
                    #expect(res.status == .unprocessableEntity)
                    let html = res.body.string
                    #expect(html.contains("id=\"error-familyName\">is required"))
                    #expect(html.contains("id=\"error-dateOfBirth\">must not be in the future"))
                    #expect(html.contains("id=\"error-email\">"))
                    #expect(html.contains("value=\"Ana\""), "what was typed is kept")
                }
            }
        }
    }

    /// Staff administration: add with a one-time set-password link, set role, credential and depth, reset TOTP, deactivate.
    @Suite struct StaffAdmin {
        @Test func anAdminAddsAPractitionerWhoSetsTheirOwnPasswordThenSignsIn() async throws {
            try await withDermis { app, settings in
                var admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                var link = ""
                try await app.testing().test(.POST, "/admin/staff", headers: admin,
                                             body: form([("name", "Dr New"), ("email", "dr.new@test.example"), ("role", "practitioner"),
                                                         ("credential", "physician"), ("maxDepthMm", "2.0")])) { res in
                    #expect(res.status == .ok)
                    link = Credentials.passwordLink(in: res.body.string)
                }
                let user = try #require(try await StaffUser.query(on: app.db).filter(\.$email == "dr.new@test.example").first())
                #expect(user.staffRole == .practitioner && user.credential == "physician" && user.maxDepthMm == 2.0)
                #expect(user.createdBy != nil)
                let path = try #require(URL(string: link)?.path)
                try await app.testing().test(.POST, path, headers: formHeaders,
                                             body: form([("password", "first chosen passphrase"), ("confirm", "first chosen passphrase")])) {
                    #expect($0.status == .seeOther)
                }
                _ = try await signIn(app, TestStaff(user: user, password: "first chosen passphrase", totp: nil), clock: settings.clock)
            }
        }

        @Test(arguments: [("role", "owner", "role"), ("maxDepthMm", "3", "maxDepthMm"), ("email", "nobody", "email")])
        func badStaffFieldsAreRefused(field: String, value: String, named: String) async throws {
            try await withDermis { app, settings in
                var admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                var fields = ["name": "X", "email": "x@test.example", "role": "practitioner", "maxDepthMm": "1.0"]
                fields[field] = value
                let before = try await StaffUser.query(on: app.db).count()
                try await app.testing().test(.POST, "/admin/staff", headers: admin, body: form(fields.sorted { $0.key < $1.key })) { res in
                    #expect(res.status == .unprocessableEntity)
                    #expect(res.body.string.contains("data-field=\"\(named)\""))
                }
                #expect(try await StaffUser.query(on: app.db).count() == before)
            }
        }

        @Test func anAdminChangesRoleCredentialDepthAndResetsTheAuthenticator() async throws {
            try await withDermis { app, settings in
                var admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                let nurse = try await makeStaff(app, role: .practitioner, withTOTP: true)
                let nurseSession = try await signIn(app, nurse, clock: settings.clock)
                try await app.testing().test(.POST, "/admin/staff/\(nurse.id)", headers: admin,
                                             body: form([("role", "practitioner"), ("credential", "nurse"), ("maxDepthMm", "1.25")])) {
                    #expect($0.status == .seeOther)
                }
                try await app.testing().test(.POST, "/admin/staff/\(nurse.id)/reset-totp", headers: admin) { #expect($0.status == .seeOther) }
                let reloaded = try #require(try await StaffUser.find(nurse.id, on: app.db))
                #expect(reloaded.credential == "nurse" && reloaded.maxDepthMm == 1.25 && !reloaded.totpEnabled && reloaded.totpSecret == nil)
                try await app.testing().test(.GET, "/api/v1/patients", headers: nurseSession) { #expect($0.status == .unauthorized) }
            }
        }

        @Test func anAdminCannotLockThemselvesOut() async throws {
            try await withDermis { app, settings in
                let me = try await makeStaff(app, role: .admin)
                var admin = try await signIn(app, me, clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/admin/staff/\(me.id)/deactivate", headers: admin) { #expect($0.status == .unprocessableEntity) }
                try await app.testing().test(.POST, "/admin/staff/\(me.id)", headers: admin, body: form([("role", "front-desk")])) {
                    #expect($0.status == .unprocessableEntity)
                }
            }
        }
    }
}
