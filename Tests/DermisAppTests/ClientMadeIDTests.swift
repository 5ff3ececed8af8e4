import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// A client-made `id` on POST /api/v1/patients and /api/v1/appointments: the same request again (its answer lost to a
/// dropped connection or a crash) finds the stored record (200), never a second one; the id naming another record is a
/// 409; a malformed id is a 422 naming `id`. Nothing is written by a refused request.
extension AppTests {
    @Suite struct ClientMadeIDs {
        @Test func aPatientCreatedTwiceWithItsIdIsStoredOnce() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let client = TestClient(app: app, headers: try await signIn(app, staff, clock: settings.clock))
                let id = UUID()
                let body: [String: Any] = ["id": id.uuidString.lowercased(), "givenName": "Amara", "familyName": "Okafor-Retry",
                                           "dateOfBirth": "1988-04-09", "phone": "+44 7700 900123"]
                let first = try await client.send(.POST, "/api/v1/patients", body)
                #expect(first.status == .created, "\(first.text)")
                #expect((first.object["id"] as? String)?.lowercased() == id.uuidString.lowercased())
                let again = try await client.send(.POST, "/api/v1/patients", body)
                #expect(again.status == .ok, "the same request again: the stored record")
                #expect(again.object["id"] as? String == first.object["id"] as? String && again.object["mrn"] as? String == first.object["mrn"] as? String)
                #expect(try await Patient.query(on: app.db).filter(\.$familyName == "Okafor-Retry").count() == 1)
                let events = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Patient").filter(\.$objectID == id.uuidString).all()
                #expect(events.map(\.action).sorted() == ["create", "read"], "the second sending is audited as a read, not a second creation")

                var other = body
                other["givenName"] = "Someone else"
                let clash = try await client.send(.POST, "/api/v1/patients", other)
                #expect(clash.status == .conflict && clash.text.contains("id"), "\(clash.text)")
                for bad in ["not-a-uuid", "12345"] {
                    var malformed = body
                    malformed["id"] = bad
                    let refused = try await client.send(.POST, "/api/v1/patients", malformed)
                    #expect(refused.status == .unprocessableEntity && refused.text.contains("id"), "\(refused.text)")
                }
                var numeric = body
                numeric["id"] = 42
                #expect(try await client.send(.POST, "/api/v1/patients", numeric).status == .unprocessableEntity)
                #expect(try await Patient.query(on: app.db).filter(\.$familyName == "Okafor-Retry").count() == 1, "nothing more written")
                #expect(try await Patient.query(on: app.db).filter(\.$givenName == "Someone else").count() == 0)
            }
        }

        @Test func aBookingSentTwiceWithItsIdHoldsOneSlot() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .frontDesk)
                let client = TestClient(app: app, headers: try await signIn(app, staff, clock: settings.clock))
                let location = try #require(try await Location.query(on: app.db).first()).requireID()
                let id = UUID()
                let body: [String: Any] = ["id": id.uuidString, "location": location.uuidString, "service": "consultation",
                                           "start": "2026-11-30T10:00:00Z"]
                let first = try await client.send(.POST, "/api/v1/appointments", body)
                #expect(first.status == .created, "\(first.text)")
                let again = try await client.send(.POST, "/api/v1/appointments", body)
                #expect(again.status == .ok, "\(again.text)")
                #expect((again.object["id"] as? String)?.lowercased() == id.uuidString.lowercased())
                #expect(try await Appointment.query(on: app.db).count() == 1, "one booking, though asked twice")
                // Without the id the same time is simply taken; with the id, a different time is another booking: 409.
                var plain = body
                plain.removeValue(forKey: "id")
                #expect(try await client.send(.POST, "/api/v1/appointments", plain).status == .conflict)
                var moved = body
                moved["start"] = "2026-11-30T11:00:00Z"
                let clash = try await client.send(.POST, "/api/v1/appointments", moved)
                #expect(clash.status == .conflict && clash.text.contains("id:"), "\(clash.text)")
                #expect(try await Appointment.query(on: app.db).count() == 1)
                // The same request ten times at once, as a client retrying too eagerly: one booking, each answered with it.
                let twice = UUID()
                var eager = body
                eager["id"] = twice.uuidString
                eager["start"] = "2026-11-30T14:00:00Z"
                let raw = jsonBody(eager)
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for _ in 0..<10 { group.addTask { try await client.send(.POST, "/api/v1/appointments", rawBody: raw).status } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == .created }.count == 1 && statuses.allSatisfy { $0 == .created || $0 == .ok }, "\(statuses)")
                #expect(try await Appointment.query(on: app.db).filter(\.$id == twice).count() == 1)
                #expect(try await Appointment.query(on: app.db).count() == 2)
                // A patient's id is not a booking's.
                let patient = try #require(try await Patient.query(on: app.db).first()).requireID()
                moved["id"] = patient.uuidString
                #expect(try await client.send(.POST, "/api/v1/appointments", moved).status == .created,
                        "ids are per kind of record: a patient's id is free for a booking")
            }
        }
    }
}
