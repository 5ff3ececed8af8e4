import DermisCore
import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

/// A 1×1 PNG, as the signature pad would send (base64 of real PNG bytes).
let tinyPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

/// Drives a patient's course through the JSON API, as a tablet app or a test would.
struct Course {
    let app: Application
    let session: HTTPHeaders
    let patientID: UUID

    func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil, ifMatch: Int? = nil) async throws -> (HTTPStatus, [String: Any], String) {
        let reply = try await TestClient(app: app, headers: session).send(method, "/api/v1/patients/\(patientID)\(path)", body, ifMatch: ifMatch)
        return (reply.status, reply.object, reply.text)
    }

    static var eligibleIntake: [String: Any] { ["dateOfBirth": "1988-03-14", "fitzpatrickType": 3, "pregnant": false, "nursing": false,
                                                "treatmentZones": ["cheeks", "forehead"]] }

    func intake(_ body: [String: Any] = Course.eligibleIntake) async throws { #expect(try await call(.POST, "/intakes", body).0 == .created) }

    @discardableResult
    func plan(depths: [String: Double] = [:], maxDepth: Double = 1.5) async throws -> [String: Any] {
        let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"], ["zone": "forehead", "indication": "fine-lines"]],
                                      "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": maxDepth, "startDate": "2026-12-01"]
        let (status, body, text) = try await call(.POST, "/plans", ["request": request, "adjustments": depths.map { ["zone": $0.key, "depthMm": $0.value] }])
        #expect(status == .created, "\(text)")
        return body
    }

    func consent(planID: String) async throws -> (HTTPStatus, [String: Any]) {
        let (status, body, _) = try await call(.POST, "/plans/\(planID)/consents", ["typedName": "zoe lefevre", "signature": "data:image/png;base64,\(tinyPNG)"])
        return (status, body)
    }

    /// Intake, plan, consent: ready to chart. Returns the plan id.
    @discardableResult
    func ready() async throws -> String {
        try await intake()
        let planID = try await plan()["planID"] as! String
        #expect(try await consent(planID: planID).0 == .created)
        return planID
    }

    func start() async throws -> (HTTPStatus, [String: Any], String) { try await call(.POST, "/sessions") }
}

extension AppTests {
    @Suite struct Treatment {
        private func setUp(_ app: Application, _ settings: DermisSettings, role: StaffRole = .practitioner) async throws -> (Course, TestStaff) {
            let staff = try await makeStaff(app, role: role)
            let session = try await signIn(app, staff, clock: settings.clock)
            let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
            return (Course(app: app, session: session, patientID: zoe.id!), staff)
        }

        private func lot(_ app: Application, _ number: String = "DEMO-LOT-A") async throws -> CartridgeLot {
            try await CartridgeLot.query(on: app.db).filter(\.$lotNumber == number).first()!
        }

        private func pen(_ app: Application) async throws -> Device { try await Device.query(on: app.db).first()! }

        /// A started chart with numbing done 30 minutes ago and pen and lot chosen: ready to chart zones.
        private func numbedChart(_ course: Course, _ app: Application, _ settings: DermisSettings) async throws -> (String, Int) {
            try await course.ready()
            let (status, chart, text) = try await course.start()
            #expect(status == .created, "\(text)")
            let chartID = chart["chartID"] as! String
            let (_, numbed, _) = try await course.call(.POST, "/sessions/\(chartID)/numbing", ifMatch: chart["version"] as? Int)
            settings.manualClock.advance(by: 30 * 60)
            return (chartID, numbed["version"] as! Int)
        }

        private func chartBody(_ app: Application, cheeks: Double = 1.5, lot: UUID? = nil, extra: [String: Any] = [:]) async throws -> [String: Any] {
            var body: [String: Any] = [
                "identityConfirmed": true, "skinCleansed": true, "deviceID": try await pen(app).id!.uuidString,
                "zones": [["zone": "cheeks", "depthMm": cheeks, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20],
                          ["zone": "forehead", "depthMm": 0.75, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12]],
                "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": true, "notes": "Tolerated well.",
            ]
            let chosen: UUID?
            if let lot { chosen = lot } else { chosen = try await self.lot(app).id }
            if let chosen { body["lotID"] = chosen.uuidString }
            body.merge(extra) { $1 }
            return body
        }

        // MARK: Plans

        @Test func aPlanIsSavedAsVersionsWithTheLoweredDepth() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                try await course.intake()
                let first = try await course.plan(depths: ["cheeks": 1.0])
                #expect(first["version"] as? Int == 1)
                #expect(((first["plan"] as! [String: Any])["zones"] as! [[String: Any]])[0]["depthMm"] as? Double == 1.0)
                #expect(try await course.plan()["version"] as? Int == 2)
                let stored = try await TreatmentPlanRecord.query(on: app.db).sort(\.$version).all()
                #expect(stored.count == 2 && stored[0].adjustments.contains("cheeks"))
            }
        }

        @Test func raisingADepthAboveTheLicensedMaximumIsRefusedNamingIt() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"]], "skin": "thick", "device": "skinpen",
                                              "practitionerMaxDepthMm": 2.5]
                let (status, body, _) = try await course.call(.POST, "/plans", ["request": request, "adjustments": [["zone": "cheeks", "depthMm": 2.0]]])
                #expect(status == .unprocessableEntity)
                let error = body["error"] as? [String: Any]
                #expect(error?["field"] as? String == "depth.cheeks")
                #expect((error?["message"] as? String)?.contains("licensed maximum of 1.5 mm") == true, "the practitioner's own limit applies, not the body's")
                #expect(try await TreatmentPlanRecord.query(on: app.db).count() == 0)
            }
        }

        @Test func theFrontDeskCannotPlan() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings, role: .frontDesk)
                let (status, _, _) = try await course.call(.POST, "/plans", ["request": [:]])
                #expect(status == .forbidden)
            }
        }

        // MARK: Consent

        @Test func aConsentNeedsThePatientsNameAndARealDrawing() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                try await course.intake()
                let planID = try await course.plan()["planID"] as! String
                let jpeg = Data([0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 0, count: 100)).base64EncodedString()
                let huge = Data(TreatmentService.pngMagic + Array(repeating: 7, count: 300 * 1024)).base64EncodedString()
                for (name, signature, field) in [("Someone Else", "data:image/png;base64,\(tinyPNG)", "typedName"),
                                                 ("Zoë Lefèvre", "data:image/png;base64,\(jpeg)", "signature"),
                                                 ("Zoë Lefèvre", "data:image/png;base64,\(huge)", "signature"),
                                                 ("Zoë Lefèvre", "<script>alert(1)</script>", "signature")] {
                    let (status, body, _) = try await course.call(.POST, "/plans/\(planID)/consents", ["typedName": name, "signature": signature])
                    #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == field, "\(field)")
                }
                #expect(try await ConsentRecord.query(on: app.db).count() == 0)
                let (status, body) = try await course.consent(planID: planID)
                #expect(status == .created)
                // What is kept and hashed is the drawing written anew, pixels only.
                let stored = try #require(try await ConsentRecord.query(on: app.db).first()).signaturePNG
                #expect(body["signatureSHA256"] as? String == SHA256.hash(data: stored).map { String(format: "%02x", $0) }.joined())
                #expect(Array(stored.prefix(8)) == TreatmentService.pngMagic)
            }
        }

        @Test func aNewTemplateVersionLeavesSignedConsentsAsTheyWere() async throws {
            try await withDermis { app, settings in
                let (course, staff) = try await setUp(app, settings)
                let planID = try await course.ready()
                let consent = try #require(try await ConsentRecord.query(on: app.db).first())
                let v1 = consent.$template.id
                _ = try await ConsentTexts.publish(title: "New text", body: String(repeating: "New consent wording. ", count: 5),
                                                   clinicID: try await Clinic.query(on: app.db).first()!.requireID(), by: staff.id, at: testNow, on: app.db)
                try await app.testing().test(.GET, "/patients/\(course.patientID)/consents/\(consent.id!)", headers: course.session) { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains("Text version 1") && res.body.string.contains("id=\"signature-verified\""))
                }
                #expect(try await ConsentRecord.find(consent.id, on: app.db)?.$template.id == v1)
                _ = planID
            }
        }

        @Test func aChangedSignatureOnDiskIsReportedOnThePrintableCopy() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                try await course.ready()
                let consent = try #require(try await ConsentRecord.query(on: app.db).first())
                var bytes = consent.signaturePNG
                bytes[bytes.count - 1] ^= 0xFF
                consent.signaturePNG = bytes
                try await consent.save(on: app.db)
                try await app.testing().test(.GET, "/patients/\(course.patientID)/consents/\(consent.id!)", headers: course.session) { res in
                    #expect(res.body.string.contains("id=\"signature-mismatch\""))
                }
            }
        }

        // MARK: Starting a session

        @Test func noSessionStartsWithoutACurrentScreeningAndAConsentForThePlan() async throws {
            try await withDermis { app, settings in
                let (course, staff) = try await setUp(app, settings)
                var (status, _, text) = try await course.start()
                #expect(status == .conflict && text.contains("no screening") && text.contains("no plan"))
                try await course.ready()
                // A new plan version after the consent: the consent no longer covers the current plan.
                try await course.plan(depths: ["cheeks": 1.25])
                (status, _, text) = try await course.start()
                #expect(status == .conflict && text.contains("has no signed consent"))
                let planID = try await TreatmentPlanRecord.query(on: app.db).sort(\.$version, .descending).first()!.id!.uuidString
                #expect(try await course.consent(planID: planID).0 == .created)
                // 30 days on, the screening has expired (sign in again: the session timed out too); the day before, it had not.
                settings.manualClock.advance(by: 30 * 86400)
                let later = Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: course.patientID)
                (status, _, text) = try await later.start()
                #expect(status == .conflict && text.contains("expired"))
                settings.manualClock.advance(by: -86400)
                let dayBefore = Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: course.patientID)
                (status, _, _) = try await dayBefore.start()
                #expect(status == .created)
            }
        }

        @Test func aDeferredScreeningBlocksUntilAnOverride() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                var intake = Course.eligibleIntake
                intake["medications"] = [["code": "isotretinoin", "lastDose": "2026-07-01"]]
                try await course.intake(intake)
                let planID = try await course.plan()["planID"] as! String
                _ = try await course.consent(planID: planID)
                let (status, _, text) = try await course.start()
                #expect(status == .conflict && text.contains("isotretinoin-recent"))
            }
        }

        // MARK: Charting

        @Test func depthsBeyondTheLicenceTheDeviceOrThePlanAreRefused() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let (chartID, version) = try await numbedChart(course, app, settings)
                for (depth, words) in [(1.75, "licensed maximum of 1.5 mm"), (2.75, "device's maximum of 2.5 mm")] {
                    let (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app, cheeks: depth), ifMatch: version)
                    #expect(status == .unprocessableEntity)
                    #expect(((body["error"] as? [String: Any])?["message"] as? String)?.contains(words) == true, "\(depth): \(body)")
                }
                // Over the plan: the plan put the forehead at 0.75; 1.25 is two steps deeper.
                var deep = try await chartBody(app)
                deep["zones"] = [["zone": "forehead", "depthMm": 1.25, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12]]
                let (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", deep, ifMatch: version)
                #expect(status == .unprocessableEntity && ((body["error"] as? [String: Any])?["message"] as? String)?.contains("deeper than the plan") == true)
                #expect(try await lot(app).quantityRemaining == 50, "a refused save took no cartridge")
            }
        }

        @Test func needlingWaitsForTheNumbingMinimumOrAReason() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                try await course.ready()
                let (_, chart, _) = try await course.start()
                let chartID = chart["chartID"] as! String
                let (_, numbed, _) = try await course.call(.POST, "/sessions/\(chartID)/numbing", ifMatch: chart["version"] as? Int)
                let version = numbed["version"] as! Int
                settings.manualClock.advance(by: 29 * 60)
                var (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app), ifMatch: version)
                #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "numbing")
                (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)",
                                                          try await chartBody(app, extra: ["numbingOverrideReason": "patient asked to start; 0.75 mm forehead first"]),
                                                          ifMatch: version)
                #expect(status == .ok)
                #expect(try await lot(app).quantityRemaining == 49, "the chosen lot gave one cartridge")
                let zones = body["zones"] as! [[String: Any]]
                #expect(zones[0]["estimatedChannelsPerCm2"] as? Int == 280)
            }
        }

        @Test func anExpiredRecalledOrUsedUpLotCannotBeCharted() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let stock = Inventory(db: app.db, clinicID: try await Clinic.query(on: app.db).first()!.requireID())
                let soon = try await stock.receive(lotNumber: "SOON", expiry: "2026-12-10", needleCount: "14", quantity: "5", today: Fixture.today, at: testNow)
                let one = try await stock.receive(lotNumber: "ONE", expiry: "2027-06-01", needleCount: "14", quantity: "1", today: Fixture.today, at: testNow)
                let recalled = try await stock.receive(lotNumber: "BAD", expiry: "2027-06-01", needleCount: "14", quantity: "5", today: Fixture.today, at: testNow)
                _ = try await stock.recall(recalled.id!, reason: "maker's notice", at: testNow)
                let (chartID, version) = try await numbedChart(course, app, settings)
                var (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app, lot: recalled.id), ifMatch: version)
                #expect(status == .unprocessableEntity && ((body["error"] as? [String: Any])?["message"] as? String)?.contains("recalled") == true)
                (status, _, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app, lot: one.id), ifMatch: version)
                #expect(status == .ok)
                #expect(try await CartridgeLot.find(one.id, on: app.db)?.quantityRemaining == 0)
                // A second chart: lot ONE is used up, SOON expires on 2026-12-10 (usable that day, not the next).
                let emptied = try await CartridgeLot.find(one.id, on: app.db)!
                #expect(one.problem(on: Fixture.today) == nil && emptied.problem(on: Fixture.today)?.contains("used up") == true)
                #expect(soon.problem(on: CalendarDate(iso: "2026-12-10")!) == nil)
                #expect(soon.problem(on: CalendarDate(iso: "2026-12-11")!)?.contains("expired") == true)
                (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app, lot: soon.id), ifMatch: version + 1)
                #expect(status == .unprocessableEntity && ((body["error"] as? [String: Any])?["message"] as? String)?.contains("already charted") == true)
            }
        }

        @Test func signingNeedsTheWholeChecklistAndOnlyTheChartingPractitioner() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let (chartID, version) = try await numbedChart(course, app, settings)
                var (status, body, _) = try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: version)
                #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "identityConfirmed")
                let (_, saved, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app), ifMatch: version)
                let other = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let stranger = Course(app: app, session: other, patientID: course.patientID)
                (status, _, _) = try await stranger.call(.POST, "/sessions/\(chartID)/sign", ifMatch: saved["version"] as? Int)
                #expect(status == .forbidden)
                (status, body, _) = try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: saved["version"] as? Int)
                #expect(status == .ok && body["status"] as? String == "signed")
            }
        }

        @Test func aSignedChartIsAmendOnlyAndKeepsEveryVersion() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let (chartID, version) = try await numbedChart(course, app, settings)
                let (_, saved, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app), ifMatch: version)
                let (_, signed, _) = try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: saved["version"] as? Int)
                let signedVersion = signed["version"] as! Int
                var (status, _, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app, extra: ["notes": "rewritten"]), ifMatch: signedVersion)
                #expect(status == .conflict)
                var amendment = try await chartBody(app, extra: ["notes": "Pinpoint bleeding resolved in 10 minutes.", "painScore": 4])
                amendment["reason"] = "short"
                (status, _, _) = try await course.call(.POST, "/sessions/\(chartID)/amendments", amendment, ifMatch: signedVersion)
                #expect(status == .unprocessableEntity)
                amendment["reason"] = "Pain score re-asked after the session"
                let (created, body, _) = try await course.call(.POST, "/sessions/\(chartID)/amendments", amendment, ifMatch: signedVersion)
                #expect(created == .created && body["version"] as? Int == signedVersion + 1 && body["painScore"] as? Int == 4)
                let rows = try await TreatmentSession.query(on: app.db).filter(\.$chartID == UUID(uuidString: chartID)!).sort(\.$version).all()
                #expect(rows.map(\.version) == [signedVersion, signedVersion + 1])
                #expect(rows[0].painScore == 3 && rows[0].notes == "Tolerated well." && rows[0].amendmentReason == nil)
                try await app.testing().test(.GET, "/patients/\(course.patientID)/sessions/\(chartID)", headers: course.session) { res in
                    #expect(res.body.string.contains("Pain score re-asked after the session"))
                    #expect(res.body.string.contains("id=\"chart-history\""))
                }
            }
        }

        @Test func twoSavesOrTwoAmendmentsFromTheSameVersionExactlyOneWins() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let (chartID, version) = try await numbedChart(course, app, settings)
                let body = try await chartBody(app)
                func race(_ method: HTTPMethod, _ path: String, _ body: [String: Any], from version: Int) async throws -> [HTTPStatus] {
                    let data = try JSONSerialization.data(withJSONObject: body)
                    return try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                        for _ in 0..<2 {
                            group.addTask {
                                try await course.call(method, path, try JSONSerialization.jsonObject(with: data) as? [String: Any], ifMatch: version).0
                            }
                        }
                        return try await group.reduce(into: []) { $0.append($1) }.sorted { $0.code < $1.code }
                    }
                }
                let notes = body.merging(["notes": "A"]) { $1 }
                let saves = try await race(.PUT, "/sessions/\(chartID)", notes, from: version)
                #expect(saves == [.ok, .conflict])
                #expect(try await lot(app).quantityRemaining == 49, "the losing save took no cartridge")
                let latest = try await TreatmentSession.query(on: app.db).filter(\.$chartID == UUID(uuidString: chartID)!).first()!
                let (_, signed, _) = try await course.call(.POST, "/sessions/\(chartID)/sign", ifMatch: latest.version)
                let amend = body.merging(["reason": "Late note about aftercare advice"]) { $1 }
                let amendments = try await race(.POST, "/sessions/\(chartID)/amendments", amend, from: signed["version"] as! Int)
                #expect(amendments == [.created, .conflict])
            }
        }

        @Test func aPenTakenOutOfServiceIsNoLongerOfferedOrAccepted() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let pen = try await pen(app)
                var admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/admin/inventory/devices/\(pen.id!)/active", headers: admin, body: form([("active", "false")])) {
                    #expect($0.status == .seeOther)
                }
                let (chartID, version) = try await numbedChart(course, app, settings)
                try await app.testing().test(.GET, "/patients/\(course.patientID)/sessions/\(chartID)", headers: course.session) { res in
                    #expect(!res.body.string.contains("DEMO-PEN-001"))
                }
                let (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app), ifMatch: version)
                #expect(status == .unprocessableEntity && ((body["error"] as? [String: Any])?["message"] as? String)?.contains("out of service") == true)
            }
        }

        @Test func overlongFreeTextIsRefusedNotCut() async throws {
            try await withDermis { app, settings in
                let (course, _) = try await setUp(app, settings)
                let (chartID, version) = try await numbedChart(course, app, settings)
                let (status, body, _) = try await course.call(.PUT, "/sessions/\(chartID)",
                                                              try await chartBody(app, extra: ["notes": String(repeating: "n", count: 5001)]), ifMatch: version)
                #expect(status == .unprocessableEntity && (body["error"] as? [String: Any])?["field"] as? String == "notes")
                let stored = try await TreatmentSession.query(on: app.db).first()
                #expect(stored?.notes == "" && stored?.version == version)
            }
        }

        // MARK: Recall

        @Test func aRecallListsEverySessionThatUsedTheLotAndNoOther() async throws {
            try await withDermis { app, settings in
                let (course, practitioner) = try await setUp(app, settings)
                let clinicID = try await Clinic.query(on: app.db).first()!.requireID()
                let otherLot = try await Inventory(db: app.db, clinicID: clinicID)
                    .receive(lotNumber: "OTHER", expiry: "2027-06-01", needleCount: "14", quantity: "5", today: Fixture.today, at: testNow)
                // Zoë is charted with the demo lot.
                let (chartID, version) = try await numbedChart(course, app, settings)
                #expect(try await course.call(.PUT, "/sessions/\(chartID)", try await chartBody(app), ifMatch: version).0 == .ok)
                // José with the other lot; Amara with the demo lot.
                var used: [String: UUID] = [:]
                for (family, lotID) in [("Álvarez", otherLot.id!), ("Nwosu", try await lot(app).id!)] {
                    let patient = try await Patient.query(on: app.db).filter(\.$familyName == family).first()!
                    let other = Course(app: app, session: course.session, patientID: patient.id!)
                    var intake = Course.eligibleIntake
                    intake["dateOfBirth"] = patient.dateOfBirth
                    try await other.intake(intake)
                    let planID = try await other.plan()["planID"] as! String
                    _ = try await other.call(.POST, "/plans/\(planID)/consents", ["typedName": "\(patient.givenName) \(patient.familyName)",
                                                                                  "signature": "data:image/png;base64,\(tinyPNG)"])
                    let (_, chart, _) = try await other.start()
                    let id = chart["chartID"] as! String
                    let (_, numbed, _) = try await other.call(.POST, "/sessions/\(id)/numbing", ifMatch: chart["version"] as? Int)
                    let (status, _, text) = try await other.call(.PUT, "/sessions/\(id)",
                                                                 try await chartBody(app, lot: lotID, extra: ["numbingOverrideReason": "test: numbed at the front desk earlier"]),
                                                                 ifMatch: numbed["version"] as? Int)
                    #expect(status == .ok, "\(text)")
                    used[family] = UUID(uuidString: id)
                }
                let uses = try await LotRecall.uses(of: try await lot(app).id!, on: app.db)
                #expect(Set(uses.map(\.mrn)) == Set(try await Patient.query(on: app.db).filter(\.$familyName ~~ ["Lefèvre", "Nwosu"]).all().map(\.mrn)))
                #expect(uses.count == 2 && uses.allSatisfy { $0.practitioner == practitioner.user.name })
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                try await app.testing().test(.POST, "/admin/inventory/lots/\(try await lot(app).id!)/recall",
                                             headers: { var h = admin; h.add(name: .contentType, value: "application/x-www-form-urlencoded"); return h }(),
                                             body: form([("reason", "Maker's field safety notice 2026-11")])) { #expect($0.status == .seeOther) }
                try await app.testing().test(.GET, "/admin/inventory/lots/\(try await lot(app).id!)", headers: admin) { res in
                    #expect(res.body.string.contains("id=\"recalled\""))
                    #expect(res.body.string.contains("Lefèvre") && res.body.string.contains("Nwosu") && !res.body.string.contains("Álvarez"))
                    #expect(res.body.string.contains(used["Nwosu"]!.uuidString))
                }
            }
        }
    }
}
