import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// Only zones the current screening checked may be planned or charted: its in-area rules (a toxin in the forehead)
    /// know nothing of an area the intake did not name.
    @Suite struct ScreenedZones {
        static var cheeksOnlyWithForeheadToxin: [String: Any] {
            var intake = Course.eligibleIntake
            intake["treatmentZones"] = ["cheeks"]
            intake["recentProcedures"] = [["kind": "botulinum-toxin", "date": "2026-10-30", "zones": ["forehead"]]]
            return intake
        }

        func course(_ app: Application, _ settings: DermisSettings) async throws -> Course {
            let staff = try await makeStaff(app, role: .practitioner)
            let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
            return Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: try zoe.requireID())
        }

        @Test func aPlanCannotIncludeAZoneTheScreeningNeverChecked() async throws {
            try await withDermis { app, settings in
                let course = try await course(app, settings)
                try await course.intake(Self.cheeksOnlyWithForeheadToxin)
                let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"], ["zone": "forehead", "indication": "fine-lines"]],
                                              "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5, "startDate": "2026-12-01"]
                let (status, body, text) = try await course.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any]])
                #expect(status == .unprocessableEntity, "\(text)")
                let error = body["error"] as? [String: Any]
                #expect(error?["field"] as? String == "zones[1].zone")
                #expect((error?["message"] as? String)?.contains("forehead") == true && (error?["message"] as? String)?.contains("new intake") == true)
                #expect(try await TreatmentPlanRecord.query(on: app.db).count() == 0)
            }
        }

        @Test func onlyAPhysicianWithAReasonPlansAZoneTheScreeningDidNotCheckAndItIsKeptAndAudited() async throws {
            try await withDermis { app, settings in
                let nurse = try await course(app, settings)
                try await nurse.intake(Self.cheeksOnlyWithForeheadToxin)
                let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"], ["zone": "forehead", "indication": "fine-lines"]],
                                              "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5, "startDate": "2026-12-01"]
                let reason = "Forehead examined in clinic; toxin site healed, patient asked to add it"
                // A practitioner who is not a physician cannot, whatever the reason.
                let (refused, body, _) = try await nurse.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any], "unscreenedOverrideReason": reason])
                #expect(refused == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "unscreenedOverrideReason")
                #expect(try await TreatmentPlanRecord.query(on: app.db).count() == 0)
                // A physician: a reason is required, then the plan is saved with the override on it and an audit row.
                let physicianStaff = try await makeStaff(app, role: .practitioner)
                try await StaffUser.query(on: app.db).filter(\.$id == physicianStaff.id).set(\.$credential, to: "physician").update()
                let physician = Course(app: app, session: try await signIn(app, physicianStaff, clock: settings.clock), patientID: nurse.patientID)
                let (short, _, _) = try await physician.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any], "unscreenedOverrideReason": "ok"])
                #expect(short == .unprocessableEntity)
                // The override waives the missing screening, never a rule: the toxin in the forehead four weeks ago fires.
                let (fired, firedBody, firedText) = try await physician.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any], "unscreenedOverrideReason": reason])
                #expect(fired == .unprocessableEntity, "\(firedText)")
                #expect(((firedBody["error"] as? [String: Any])?["message"] as? String)?.contains("toxin") == true, "\(firedText)")
                #expect(try await TreatmentPlanRecord.query(on: app.db).count() == 0)
                // A cheeks-only intake with nothing that concerns the forehead: the physician's override stands.
                settings.manualClock.advance(by: 60)
                var cheeksOnly = Course.eligibleIntake
                cheeksOnly["treatmentZones"] = ["cheeks"]
                try await physician.intake(cheeksOnly)
                let (saved, plan, text) = try await physician.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any], "unscreenedOverrideReason": reason])
                #expect(saved == .created, "\(text)")
                let record = try #require(try await TreatmentPlanRecord.query(on: app.db).first())
                #expect(record.unscreenedZones == "forehead" && record.unscreenedReason == reason && record.unscreenedBy == physicianStaff.id)
                let audited = try await AuditEvent.query(on: app.db).filter(\.$objectType == "UnscreenedZoneOverride")
                    .filter(\.$objectID == record.id?.uuidString).count()
                #expect(audited == 1)
                #expect(try await physician.consent(planID: try #require(plan["planID"] as? String)).0 == .created)
                // A later intake records a toxin in the forehead: the override no longer stands, and the start is refused.
                settings.manualClock.advance(by: 60)
                try await physician.intake(Self.cheeksOnlyWithForeheadToxin)
                let (blocked, _, blockedText) = try await physician.start()
                #expect(blocked == .conflict && blockedText.contains("forehead"), "\(blockedText)")
                // With a clean cheeks-only intake again, the session starts with the overridden zone.
                settings.manualClock.advance(by: 60)
                try await physician.intake(cheeksOnly)
                let (started, _, startText) = try await physician.start()
                #expect(started == .created, "\(startText)")
            }
        }

        @Test func aSessionCannotStartOrChartAZoneTheCurrentScreeningDidNotCheck() async throws {
            try await withDermis { app, settings in
                let course = try await course(app, settings)
                // Planned and consented with both zones screened; then a new intake names only the cheeks.
                let planID = try await course.ready()
                settings.manualClock.advance(by: 60)
                try await course.intake(Self.cheeksOnlyWithForeheadToxin)
                let (status, _, text) = try await course.start()
                #expect(status == .conflict && text.contains("forehead") && text.contains("new intake"), "\(text)")
                #expect(try await TreatmentSession.query(on: app.db).count() == 0)
                // A cheeks-only plan starts; charting the forehead in it is refused, naming the zone.
                let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"]], "skin": "thick", "device": "skinpen",
                                              "practitionerMaxDepthMm": 1.5, "startDate": "2026-12-01"]
                let (planned, plan, _) = try await course.call(.POST, "/plans", ["request": request, "adjustments": [] as [Any]])
                #expect(planned == .created && plan["planID"] as? String != planID)
                #expect(try await course.consent(planID: try #require(plan["planID"] as? String)).0 == .created)
                let (started, chart, startText) = try await course.start()
                #expect(started == .created, "\(startText)")
                let chartID = try #require(chart["chartID"] as? String)
                let pen = try #require(try await Device.query(on: app.db).first())
                let body: [String: Any] = [
                    "identityConfirmed": true, "skinCleansed": true, "deviceID": pen.id!.uuidString,
                    "zones": [["zone": "cheeks", "depthMm": 1.0, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20],
                              ["zone": "forehead", "depthMm": 0.25, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12]],
                    "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": false, "notes": "", "numbingOverrideReason": "test",
                ]
                let (saved, savedBody, savedText) = try await course.call(.PUT, "/sessions/\(chartID)", body, ifMatch: chart["version"] as? Int)
                #expect(saved == .unprocessableEntity, "\(savedText)")
                #expect(((savedBody["error"] as? [String: Any])?["message"] as? String)?.contains("forehead") == true, "\(savedText)")
            }
        }
    }
}
