import DermisCore
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// `POST /api/v1/screen` and `POST /api/v1/plan` answer exactly what the engine (and the CLI) answers.
    @Suite struct EngineAPI {
        static var intake: [String: Any] { [
            "dateOfBirth": "1990-04-02", "fitzpatrickType": 3, "pregnant": false, "nursing": false,
            "treatmentZones": ["forehead", "cheeks"],
            "medications": [["code": "isotretinoin", "lastDose": "2026-06-01"]],
        ] }

        @Test func screeningMatchesTheEngineAndDefaultsToTodayInTheClinic() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                try await app.testing().test(.POST, "/api/v1/screen", headers: json(session), body: jsonBody(["intake": Self.intake])) { res in
                    #expect(res.status == .ok)
                    let expected = try Screening.screen(try decodeInput(Intake.self, from: JSONSerialization.data(withJSONObject: Self.intake)),
                                                        on: Fixture.today, protocol: .bundled)
                    #expect(Data(buffer: res.body) == (try ContractJSON.encode(expected)))
                }
                try await app.testing().test(.POST, "/api/v1/screen", headers: json(session),
                                             body: jsonBody(["intake": Self.intake, "on": "2026-12-01"])) { res in
                    #expect(res.body.string.contains(#""outcome" : "eligible""#))
                }
            }
        }

        @Test func planningMatchesTheEngine() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let request: [String: Any] = ["zones": [["zone": "cheeks", "indication": "acne-scars"]], "skin": "thick",
                                              "device": "skinpen", "practitionerMaxDepthMm": 1.5, "startDate": "2026-12-01"]
                try await app.testing().test(.POST, "/api/v1/plan", headers: json(session), body: jsonBody(request)) { res in
                    #expect(res.status == .ok)
                    let expected = try Planning.plan(try decodeInput(PlanRequest.self, from: JSONSerialization.data(withJSONObject: request)),
                                                     today: Fixture.today, protocol: .bundled)
                    #expect(Data(buffer: res.body) == (try ContractJSON.encode(expected)))
                }
            }
        }

        @Test(arguments: [
            ("/api/v1/screen", #"{"intake": {"dateOfBirth": "1990-01-01"}}"#, "intake.fitzpatrickType"),
            ("/api/v1/screen", #"{"intake": {"dateOfBirth": "1990-01-01", "fitzpatrickType": 3, "pregnant": false, "nursing": false, "treatmentZones": ["cheek"]}}"#, "treatmentZones[0]"),
            ("/api/v1/screen", #"{"intake": {"dateOfBirth": "1990-01-01", "fitzpatrickType": 3, "pregnant": false, "nursing": false, "treatmentZones": ["cheeks"]}, "on": "2026-02-30"}"#, "on"),
            ("/api/v1/plan", #"{"zones": [{"zone": "cheeks", "indication": "acne"}], "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5}"#, "zones[0].indication"),
            ("/api/v1/plan", #"{"zones": [], "skin": "thick", "device": "skinpen"}"#, "practitionerMaxDepthMm"),
        ])
        func badBodiesAre422NamingTheField(path: String, body: String, field: String) async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                try await app.testing().test(.POST, path, headers: json(session), body: ByteBuffer(string: body)) { res in
                    #expect(res.status == .unprocessableEntity)
                    let error = (try JSONSerialization.jsonObject(with: Data(buffer: res.body)) as? [String: Any])?["error"] as? [String: Any]
                    #expect(error?["field"] as? String == field, "\(res.body.string)")
                }
            }
        }

        @Test func strangersGet401() async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.POST, "/api/v1/plan", headers: json(sameSite), body: jsonBody([:])) {
                    #expect($0.status == .unauthorized)
                }
            }
        }
    }
}
