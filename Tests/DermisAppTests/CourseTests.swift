import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// Intake and screening: versioned intakes, stored screenings, documented overrides, currency.
    @Suite struct IntakeAndScreening {
        private func zoe(_ app: Application) async throws -> Patient {
            try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
        }

        private static let isotretinoinIntake: [(String, String)] = [
            ("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "2"), ("zone", "forehead"), ("zone", "cheeks"),
            ("condition", "herpes-simplex"), ("medication.isotretinoin", "stopped"), ("lastDose.isotretinoin", "2026-06-01"),
            ("medication.anticoagulant", "none"),
            ("procedureKind.0", "botulinum-toxin"), ("procedureDate.0", "2026-10-01"), ("procedureZones.0", "neck"),
        ]

        private func postIntake(_ app: Application, _ session: HTTPHeaders, _ patient: Patient, _ fields: [(String, String)]) async throws
            -> (HTTPStatus, String, String?) {
            var headers = session
            headers.add(name: .contentType, value: "application/x-www-form-urlencoded")
            var result: (HTTPStatus, String, String?) = (.ok, "", nil)
            try await app.testing().test(.POST, "/patients/\(patient.id!)/intake", headers: headers, body: form(fields)) { res in
                result = (res.status, res.body.string, res.headers.first(name: .location))
            }
            return result
        }

        @Test func savingAnIntakeStoresAVersionAndItsScreening() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let patient = try await zoe(app)
                let (status, _, location) = try await postIntake(app, session, patient, Self.isotretinoinIntake)
                #expect(status == .seeOther)
                let screening = try #require(try await ScreeningRecord.query(on: app.db).first())
                #expect(location == "/patients/\(patient.id!)/screenings/\(screening.id!)")
                #expect(screening.outcome == "deferred" && screening.until == "2026-12-01")
                #expect(screening.protocolVersion == ClinicalProtocol.bundled.version && screening.screenedOn == "2026-11-27")
                let intake = try #require(try await IntakeRecord.query(on: app.db).first()).intake
                #expect(intake.recentProcedures.first?.zones == ["neck"] && intake.conditions.map(\.code) == ["herpes-simplex"])
                #expect(intake.dateOfBirth.description == "1988-03-14" && intake.fitzpatrickType == 2)
                // The page shows the outcome, the end date, each reason with its source.
                try await app.testing().test(.GET, location!, headers: session) { res in
                    #expect(res.body.string.contains("id=\"until\">2026-12-01"))
                    #expect(res.body.string.contains("data-rule=\"isotretinoin-recent\""))
                    #expect(res.body.string.contains("Isotretinoin package insert"))
                    #expect(res.body.string.contains("data-rule=\"hsv-prophylaxis\"") == false, "perioral is not treated")
                }
            }
        }

        @Test func aNewIntakeNeverOverwritesTheOldOne() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let patient = try await zoe(app)
                _ = try await postIntake(app, session, patient, Self.isotretinoinIntake)
                let first = try #require(try await IntakeRecord.query(on: app.db).first())
                var changed = Self.isotretinoinIntake
                changed.removeAll { $0.0.hasPrefix("medication.isotretinoin") || $0.0.hasPrefix("lastDose") }
                _ = try await postIntake(app, session, patient, changed)
                let all = try await IntakeRecord.query(on: app.db).sort(\.$version).all()
                #expect(all.map(\.version) == [1, 2])
                #expect(all[0].answers == first.answers)
                let screenings = try await ScreeningRecord.query(on: app.db).sort(\.$createdAt).all()
                // Without isotretinoin nothing defers: the toxin was in the neck, which is not being treated.
                #expect(screenings.map(\.outcome) == ["deferred", "eligible"])
            }
        }

        @Test(arguments: [
            ("pregnant", "pregnant"), ("fitzpatrickType", "fitzpatrickType"), ("lastDose.isotretinoin", "lastDose.isotretinoin"),
            ("procedureDate.0", "procedureDate.0"),
        ])
        func aMissingAnswerIsRefusedNamingItAndNothingIsStored(drop: String, field: String) async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let (status, body, _) = try await postIntake(app, session, try await zoe(app), Self.isotretinoinIntake.filter { $0.0 != drop })
                #expect(status == .unprocessableEntity)
                #expect(body.contains("data-field=\"\(field)\""))
                #expect(try await IntakeRecord.query(on: app.db).count() == 0)
                #expect(try await ScreeningRecord.query(on: app.db).count() == 0)
            }
        }

        @Test func anUnknownZoneIsRefusedWithTheValidOnes() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let (status, body, _) = try await postIntake(app, session, try await zoe(app), Self.isotretinoinIntake + [("zone", "cheek")])
                #expect(status == .unprocessableEntity)
                #expect(body.contains("unknown zone &#39;cheek&#39;") || body.contains("unknown zone 'cheek'"))
            }
        }

        // MARK: Overrides

        private func screened(_ app: Application, _ settings: DermisSettings, _ fields: [(String, String)]) async throws -> (Patient, ScreeningRecord) {
            let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
            let patient = try await zoe(app)
            _ = try await postIntake(app, desk, patient, fields)
            return (patient, try #require(try await ScreeningRecord.query(on: app.db).first()))
        }

        private func override(_ app: Application, _ session: HTTPHeaders, _ patient: Patient, _ screening: ScreeningRecord,
                              rule: String, reason: String) async throws -> HTTPStatus {
            var headers = session
            headers.add(name: .contentType, value: "application/x-www-form-urlencoded")
            var status = HTTPStatus.ok
            try await app.testing().test(.POST, "/patients/\(patient.id!)/screenings/\(screening.id!)/overrides", headers: headers,
                                         body: form([("rule", rule), ("reason", reason)])) { status = $0.status }
            return status
        }

        @Test func aPractitionerOverridesADeferralWithAReasonAndItIsAudited() async throws {
            try await withDermis { app, settings in
                let (patient, screening) = try await screened(app, settings, Self.isotretinoinIntake)
                let nurse = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                #expect(try await override(app, nurse, patient, screening, rule: "isotretinoin-recent", reason: "too short") == .unprocessableEntity)
                #expect(try await override(app, nurse, patient, screening, rule: "no-such-rule", reason: "a long enough clinical reason") == .unprocessableEntity)
                #expect(try await override(app, nurse, patient, screening, rule: "isotretinoin-recent",
                                           reason: "Superficial 0.5 mm only; ASDS 2017 evidence discussed with patient") == .seeOther)
                let stored = try #require(try await ScreeningOverride.query(on: app.db).first())
                #expect(stored.rule == "isotretinoin-recent" && stored.reason.hasPrefix("Superficial"))
                let audit = try #require(try await AuditEvent.query(on: app.db).sort(\.$seq, .descending).first())
                #expect(audit.objectType == "Screening" && audit.action == "update" && audit.patientID == patient.id)
                let clearance = try ScreeningClearance(screening, overrides: [stored], today: Fixture.today, validDays: 30)
                #expect(clearance.cleared)
            }
        }

        @Test func theFrontDeskCannotOverride() async throws {
            try await withDermis { app, settings in
                let (patient, screening) = try await screened(app, settings, Self.isotretinoinIntake)
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                #expect(try await override(app, desk, patient, screening, rule: "isotretinoin-recent", reason: "a long enough clinical reason") == .forbidden)
                #expect(try await ScreeningOverride.query(on: app.db).count() == 0)
            }
        }

        @Test func onlyAPhysicianMayOverrideNotEligible() async throws {
            try await withDermis { app, settings in
                let fields = Self.isotretinoinIntake + [("allergy", "lidocaine")]
                let (patient, screening) = try await screened(app, settings, fields)
                #expect(screening.outcome == "not-eligible")
                let nurseStaff = try await makeStaff(app, role: .practitioner)
                nurseStaff.user.credential = "nurse"
                try await nurseStaff.user.save(on: app.db)
                let nurse = try await signIn(app, nurseStaff, clock: settings.clock)
                #expect(try await override(app, nurse, patient, screening, rule: "anaesthetic-allergy", reason: "treat without numbing at 0.25 mm") == .forbidden)
                let doctorStaff = try await makeStaff(app, role: .practitioner)
                doctorStaff.user.credential = "physician"
                try await doctorStaff.user.save(on: app.db)
                let doctor = try await signIn(app, doctorStaff, clock: settings.clock)
                #expect(try await override(app, doctor, patient, screening, rule: "anaesthetic-allergy", reason: "treat without numbing at 0.25 mm") == .seeOther)
                #expect(try await override(app, doctor, patient, screening, rule: "anaesthetic-allergy", reason: "treat without numbing at 0.25 mm") == .conflict)
            }
        }

        @Test func aScreeningIsCurrentForThirtyDaysToTheDay() async throws {
            try await withDermis { app, settings in
                let (_, screening) = try await screened(app, settings, Self.isotretinoinIntake.filter { !$0.0.contains("isotretinoin") && !$0.0.hasPrefix("procedure") })
                #expect(screening.outcome == "eligible")
                let lastDay = try ScreeningClearance(screening, overrides: [], today: Fixture.today.adding(days: 29), validDays: 30)
                let expired = try ScreeningClearance(screening, overrides: [], today: Fixture.today.adding(days: 30), validDays: 30)
                #expect(lastDay.current && lastDay.cleared && !expired.current)
                let none = try ScreeningClearance(nil, overrides: [], today: Fixture.today, validDays: 30)
                #expect(!none.current && !none.cleared)
            }
        }

        @Test func theAPIStoresAContractIntakeAndReportsTheLatestScreening() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let patient = try await zoe(app)
                let intake: [String: Any] = ["dateOfBirth": "1988-03-14", "fitzpatrickType": 2, "pregnant": true, "nursing": false,
                                             "treatmentZones": ["cheeks"]]
                try await app.testing().test(.POST, "/api/v1/patients/\(patient.id!)/intakes", headers: json(session), body: jsonBody(intake)) { res in
                    #expect(res.status == .created)
                    #expect(res.body.string.contains(#""outcome":"deferred""#) && res.body.string.contains(#""intakeVersion":1"#))
                }
                try await app.testing().test(.GET, "/api/v1/patients/\(patient.id!)/screenings/latest", headers: session) { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains(#""current":true"#) && res.body.string.contains(#""cleared":false"#))
                    #expect(res.body.string.contains(#""blocking":["pregnancy"]"#))
                }
                // The intake's date of birth is the record's: a different one (which would change age rules) is refused.
                var older = intake
                older["dateOfBirth"] = "1958-03-14"
                try await app.testing().test(.POST, "/api/v1/patients/\(patient.id!)/intakes", headers: json(session), body: jsonBody(older)) { res in
                    #expect(res.status == .unprocessableEntity && res.body.string.contains(#""field":"dateOfBirth""#))
                }
                #expect(try await IntakeRecord.query(on: app.db).count() == 1)
                try await app.testing().test(.POST, "/api/v1/patients/\(patient.id!)/intakes", headers: json(session),
                                             body: jsonBody(["dateOfBirth": "1988-03-14"])) { res in
                    #expect(res.status == .unprocessableEntity && res.body.string.contains(#""field":"fitzpatrickType""#))
                }
            }
        }

        @Test func theCoursePageShowsEachStep() async throws {
            try await withDermis { app, settings in
                let (patient, _) = try await screened(app, settings, Self.isotretinoinIntake)
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                try await app.testing().test(.GET, "/patients/\(patient.id!)/course", headers: session) { res in
                    #expect(res.status == .ok)
                    for step in ["Intake", "Screening", "Plan", "Consent", "Session"] {
                        #expect(res.body.string.contains("data-step=\"\(step)\""))
                    }
                    #expect(res.body.string.contains("state-blocked"))
                }
            }
        }
    }
}
