import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

@Suite struct CSVFormat {
    @Test func quotedFieldsEscapedQuotesAndLineBreaksReadBackAsWritten() throws {
        let values = ["plain", "with, comma", "with \"quotes\"", "two\r\nlines", "", "=HYPERLINK(\"http://x\")", "+44 7700", "-1", "@SUM(A1)"]
        let text = CSV.line(["a", "b", "c", "d", "e", "f", "g", "h", "i"]) + CSV.line(values)
        let records = try CSV.parse(text)
        #expect(records.count == 2 && records[1].line == 2)
        #expect(records[1].fields.map(CSV.unneutralised) == values)
        // Formulas are neutralised for a spreadsheet: the cell starts with ', not with =, +, - or @.
        for cell in records[1].fields[5...] { #expect(cell.hasPrefix("'")) }
    }

    @Test func lfOnlyFilesABomAndBlankLinesAreRead() throws {
        let records = try CSV.parse("\u{FEFF}given,family\nAda,Okafor\n\nBo,\"Li\nSun\"\nCy,Do")
        #expect(records.map(\.fields) == [["given", "family"], ["Ada", "Okafor"], ["Bo", "Li\nSun"], ["Cy", "Do"]])
        #expect(records.map(\.line) == [1, 2, 4, 6])
    }

    @Test func aBrokenQuoteNamesItsLine() {
        #expect(throws: CSV.Malformed.self) { try CSV.parse("a,b\n\"open,x\nmore") }
        do { _ = try CSV.parse("a,b\n\"open,x\nmore") } catch let error as CSV.Malformed { #expect(error.line == 2) } catch {}
        do { _ = try CSV.parse("a,b\nx,\"y\"z") } catch let error as CSV.Malformed { #expect(error.line == 2 && error.problem.contains("after a closing quote")) } catch {}
        do { _ = try CSV.parse("a,b\nx,\ny,b\"c") } catch let error as CSV.Malformed { #expect(error.line == 3 && error.problem.contains("unquoted")) } catch {}
    }
}

extension AppTests {
    @Suite struct PatientCSV {
        static func post(_ app: Application, _ headers: HTTPHeaders, _ csv: String, _ query: String = "") async throws -> TestClient.Reply {
            try await TestClient(app: app, headers: headers).send(.POST, "/api/v1/patients/import?\(query)", rawBody: ByteBuffer(string: csv),
                                                                  extraHeaders: ["Content-Type": "text/csv"])
        }

        static let file = """
            Patient ID,First Name,Surname,DOB,Mobile,E-mail
            A-1,Ada,Okafor,03/02/1990,+44 7700 900123,ada@example.com
            A-2,Zoë,Lefèvre,14/03/1988,,
            A-3,Bo,,01/01/1970,,
            A-4,Cy,Do,31/02/1980,,
            A-5,Ada,Okafor,03/02/1990,,
            A-6,Eve,Ng,01/01/1975,'+44 7700 900124,eve@example.com

            """

        @Test func aDryRunReportsEachRowAndWritesNothingThenTheRealRunCreatesOnceAndARerunNothing() async throws {
            try await withDermis { app, settings in
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let before = try await Patient.query(on: app.db).count()
                let query = "dateFormat=DD/MM/YYYY&source=urn:oid:1.2.826.0.1.99"
                let dry = try await Self.post(app, desk, Self.file, query)
                #expect(dry.status == .ok, "\(dry.text)")
                let results = dry.object["results"] as? [[String: Any]] ?? []
                #expect(results.map { $0["outcome"] as? String ?? "" } == ["create", "matched", "refused", "refused", "matched", "create"])
                #expect(results.map { $0["line"] as? Int ?? 0 } == [2, 3, 4, 5, 6, 7])
                #expect(results[1]["matchedBy"] as? String == "name-and-birth-date")  // the demo's Zoë Lefèvre
                #expect(results[4]["matchedBy"] as? String == "earlier-row")
                let reasons = { (i: Int) in (results[i]["reasons"] as? [[String: Any]] ?? []).map { "\($0["field"] ?? ""): \($0["problem"] ?? "")" } }
                #expect(reasons(2).contains { $0.hasPrefix("familyName:") })
                #expect(reasons(3).contains { $0.hasPrefix("dateOfBirth:") && $0.contains("31/02/1980") })
                #expect(try await Patient.query(on: app.db).count() == before)
                #expect((dry.object["columns"] as? [String: String])?["sourceID"] == "Patient ID")

                let real = try await Self.post(app, desk, Self.file, query + "&dryRun=false")
                #expect(real.status == .ok && real.object["created"] as? Int == 2 && real.object["refused"] as? Int == 2, "\(real.text)")
                #expect(try await Patient.query(on: app.db).count() == before + 2)
                let eve = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Ng").first())
                #expect(eve.phoneE164 == "+447700900124" && eve.dateOfBirth == "1975-01-01")
                // Each created patient is audited; the matched demo patient is now linked to the source's id too.
                #expect(try await AuditEvent.query(on: app.db).filter(\.$action == "create").filter(\.$objectType == "Patient").count() == 2)
                #expect(try await PatientIdentifier.query(on: app.db).filter(\.$value == "A-2").count() == 1)

                let again = try await Self.post(app, desk, Self.file, query + "&dryRun=false")
                #expect(again.object["created"] as? Int == 0 && again.object["matched"] as? Int == 4, "\(again.text)")
                let matchedBy = (again.object["results"] as? [[String: Any]] ?? []).compactMap { $0["matchedBy"] as? String }
                #expect(matchedBy == ["source-id", "source-id", "source-id", "source-id"])
                #expect(try await Patient.query(on: app.db).count() == before + 2)
                // An id the other system gave someone else is refused, not taken as a match; so is one id for two people.
                let reused = "Patient ID,First Name,Surname,DOB\nA-1,Someone,Else,01/01/1960\nB-1,Kim,Park,02/02/1962\nB-1,Lee,Park,03/03/1963\n"
                let refused = try await Self.post(app, desk, reused, query + "&dryRun=false")
                #expect(refused.status == .ok && refused.object["created"] as? Int == 1 && refused.object["refused"] as? Int == 2, "\(refused.text)")
                #expect(try await Patient.query(on: app.db).filter(\.$familyName == "Else").count() == 0)
                // Matches are patient data seen: audited.
                #expect(try await AuditEvent.query(on: app.db).filter(\.$action == "read").filter(\.$objectType == "Patient").count() >= 4)
            }
        }

        @Test func badFilesAndParametersAreRefusedByNameWithNothingStored() async throws {
            try await withDermis { app, settings in
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let before = try await Patient.query(on: app.db).count()
                let client = TestClient(app: app, headers: desk)
                let json = try await client.send(.POST, "/api/v1/patients/import?dryRun=false", ["given": "x"])
                #expect(json.status == .unsupportedMediaType)
                func field(_ reply: TestClient.Reply) -> String? { (reply.object["error"] as? [String: Any])?["field"] as? String }
                let noColumn = try await Self.post(app, desk, "Name,Born\nAda,1990-01-01\n", "dryRun=false")
                #expect(noColumn.status == .unprocessableEntity && field(noColumn)?.hasPrefix("column.") == true)
                let wrongMapping = try await Self.post(app, desk, "Name,Last,Born\nAda,O,1990-01-01\n", "column.givenName=Nom&column.familyName=Last&column.dateOfBirth=Born")
                #expect(wrongMapping.status == .unprocessableEntity && field(wrongMapping) == "column.givenName" && wrongMapping.text.contains("Name, Last, Born"))
                let mapped = try await Self.post(app, desk, "Name,Last,Born\nAda,O,1990-01-01\n", "column.givenName=Name&column.familyName=Last&column.dateOfBirth=Born")
                #expect(mapped.status == .ok && mapped.object["created"] as? Int == 1)
                let broken = try await Self.post(app, desk, "given,family,dob\nAda,\"Okafor,1990-01-01\n", "dryRun=false")
                #expect(broken.status == .unprocessableEntity && field(broken) == "line 2")
                #expect(try await Self.post(app, desk, "given,family,dob\n", "dateFormat=DDMMYY").status == .unprocessableEntity)
                #expect(try await Self.post(app, desk, "given,family,dob\n", "dryRun=maybe").status == .unprocessableEntity)
                let idsWithoutSource = try await Self.post(app, desk, "id,given,family,dob\n1,Ada,O,1990-01-01\n")
                #expect(idsWithoutSource.status == .unprocessableEntity && field(idsWithoutSource) == "source")
                let latin1 = try await TestClient(app: app, headers: desk).send(.POST, "/api/v1/patients/import", rawBody: ByteBuffer(bytes: [0x67, 0x2C, 0xE9, 0x0A]),
                                                                                 extraHeaders: ["Content-Type": "text/csv"])
                #expect(latin1.status == .unprocessableEntity && latin1.text.contains("UTF-8"))
                let wide = try await Self.post(app, desk, String(repeating: ",", count: 5_000) + "\n")
                #expect(wide.status == .unprocessableEntity && field(wide) == "line 1" && wide.text.count < 1_000)
                let long = try await Self.post(app, desk, "given,family,dob\n" + String(repeating: "x", count: 20_000) + ",O,1990-01-01\n")
                #expect(long.status == .unprocessableEntity && field(long) == "line 2")
                let ragged = try await Self.post(app, desk, "given,family,dob\nAda,Okafor,1990-01-01,extra\n", "dryRun=false")
                #expect(((ragged.object["results"] as? [[String: Any]])?.first?["outcome"] as? String) == "refused")
                #expect(try await Patient.query(on: app.db).count() == before)
            }
        }

        @Test func theRegistryExportsAsCSVThatReimportsAsMatchesAndNeutralisesFormulas() async throws {
            try await withDermis { app, settings in
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let staff = try await StaffUser.query(on: app.db).first()!
                _ = try await PatientRegistry(db: app.db, clinicID: staff.$clinic.id).create(
                    try PatientDetails(givenName: "=cmd|' /C calc'!A0", familyName: "Injection", dateOfBirth: "1970-01-01").validated(today: Fixture.today),
                    by: staff.id!, at: testNow)
                var csv = ""
                try await app.testing().test(.GET, "/api/v1/patients.csv", headers: desk) { res in
                    #expect(res.status == .ok && res.headers.first(name: .contentType) == "text/csv; charset=utf-8")
                    #expect(res.headers.first(name: .contentDisposition)?.contains("patients.csv") == true)
                    csv = res.body.string
                }
                let records = try CSV.parse(csv)
                let count = try await Patient.query(on: app.db).count()
                #expect(records.count == count + 1)
                #expect(records.contains { $0.fields[2] == "'=cmd|' /C calc'!A0" })
                #expect(try await AuditEvent.query(on: app.db).filter(\.$action == "export").filter(\.$objectType == "Patient").count() == count)
                // The export read back by the import: every row is the patient it came from.
                let back = try await Self.post(app, desk, csv, "source=https://previous-dermis.example/patient-id")
                #expect(back.object["matched"] as? Int == count && back.object["refused"] as? Int == 0, "\(back.text)")
            }
        }

        @Test func appointmentsExportByTheirLocationsDay() async throws {
            try await withDermis { app, settings in
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let client = TestClient(app: app, headers: desk)
                let patient = try await Patient.query(on: app.db).first()!
                let location = try await Location.query(on: app.db).first()!
                let booked = try await client.send(.POST, "/api/v1/appointments", ["location": location.id!.uuidString, "service": "consultation",
                                                                                  "patient": patient.id!.uuidString, "start": "2026-12-02T10:00:00Z",
                                                                                  "notes": "@SUM(1+1)"])
                #expect(booked.status == .created, "\(booked.text)")
                var text = ""
                try await app.testing().test(.GET, "/api/v1/appointments.csv?from=2026-12-02&to=2026-12-02", headers: desk) { res in
                    #expect(res.status == .ok)
                    text = res.body.string
                }
                let rows = try CSV.parse(text)
                #expect(rows.count == 2 && rows[1].fields[9] == patient.mrn && rows[1].fields[14] == "'@SUM(1+1)")
                try await app.testing().test(.GET, "/api/v1/appointments.csv?from=2026-12-03", headers: desk) { res in
                    #expect(res.status == .ok && (try? CSV.parse(res.body.string).count) == 1)
                }
                try await app.testing().test(.GET, "/api/v1/appointments.csv?from=2026-12-03&to=2026-12-01", headers: desk) { res in
                    #expect(res.status == .unprocessableEntity)
                }
            }
        }
    }
}
