import Crypto
import DermisClient
import Fluent
import Foundation
import OpenAPIAsyncHTTPClient
import Testing
import Vapor
@testable import DermisApp

extension AppTests {
    /// The generated Swift client (DermisClient), as an iPad app would use it, against a real listening server.
    @Suite struct GeneratedClient {
        @Test func theCommittedClientWasGeneratedFromTheDocumentTheServerServes() throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let document = try Data(contentsOf: root.appendingPathComponent("Sources/DermisApp/Resources/openapi.json"))
            let recorded = try String(contentsOf: root.appendingPathComponent("Sources/DermisClient/Generated/openapi.sha256"), encoding: .utf8)
            let digest = SHA256.hash(data: document).map { String(format: "%02x", $0) }.joined()
            #expect(recorded.trimmingCharacters(in: .whitespacesAndNewlines) == digest, "the document changed: run scripts/generate-client")
        }

        @Test func aCourseStepThroughTheGeneratedClient() async throws {
            try await withDermis { app, _ in
                try await app.server.start(address: .hostname("127.0.0.1", port: 0))
                let port = try #require(app.http.server.shared.localAddress?.port)
                let staff = try await makeStaff(app, role: .practitioner)
                let token = try await DermisApp.Sessions.issueToken(for: staff.id, name: "ipad", days: 1, on: app.db, at: testNow)
                let client = Client(serverURL: URL(string: "http://127.0.0.1:\(port)")!, transport: AsyncHTTPClientTransport(),
                                    middlewares: [BearerToken(token)])
                do {
                    // Register a patient, take their intake, check they are screened, plan both zones.
                    let created = try await client.createPatient(body: .json(.init(givenName: "Ada", familyName: "Okafor", dateOfBirth: "1990-02-03",
                                                                                  email: "ada@example.com")))
                    guard case let .created(answer) = created else { Issue.record("createPatient: \(created)"); throw Abort(.internalServerError) }
                    let patient = try answer.body.json
                    #expect(patient.mrn.hasPrefix("DRM-") && patient.version == 1)
                    let intake = try JSONDecoder().decode(Components.Schemas.Intake.self, from: Data("""
                        {"dateOfBirth": "1990-02-03", "fitzpatrickType": 3, "pregnant": false, "nursing": false, "treatmentZones": ["cheeks", "forehead"]}
                        """.utf8))
                    let screened = try await client.createIntake(path: .init(patientID: patient.id), body: .json(intake))
                    guard case .created = screened else { Issue.record("createIntake: \(screened)"); throw Abort(.internalServerError) }
                    let readiness = try await client.readReadiness(path: .init(patientID: patient.id)).ok.body.json
                    #expect(readiness.screened && readiness.cleared && !readiness.planned)
                    let request = try JSONDecoder().decode(Components.Schemas.SavePlanInput.self, from: Data("""
                        {"request": {"zones": [{"zone": "cheeks", "indication": "acne-scars"}, {"zone": "forehead", "indication": "fine-lines"}],
                                     "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5}}
                        """.utf8))
                    let planned = try await client.createPlan(path: .init(patientID: patient.id), body: .json(request)).created.body.json
                    #expect(planned.plan.zones.count == 2 && planned.plan.series.sessions >= 1)
                    // A stale edit is refused as the document says: the typed 409.
                    let stale = try await client.updatePatient(path: .init(patientID: patient.id), headers: .init(ifMatch: "W/\"9\""),
                                                               body: .json(.init(givenName: "Ada", familyName: "Bell", dateOfBirth: "1990-02-03")))
                    guard case .conflict = stale else { Issue.record("a stale update: \(stale)"); throw Abort(.internalServerError) }
                    #expect(try await Patient.find(UUID(uuidString: patient.id), on: app.db)?.familyName == "Okafor")
                } catch {
                    await app.server.shutdown()
                    throw error
                }
                await app.server.shutdown()
            }
        }
    }
}
