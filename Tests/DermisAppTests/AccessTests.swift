import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R1, R2: no default accounts; one access rule per route; roles; other clinics' ids are not found.
    @Suite struct Access {
        @Test func migrationsCreateNoAccounts() async throws {
            try await withDermis(seedDemo: false) { app, _ in
                let accounts = try await StaffUser.query(on: app.db).count()
                #expect(accounts == 0)
            }
        }

        @Test func everyRegisteredRouteHasAnAccessRule() async throws {
            try await withDermis { app, _ in
                let missing = app.routes.all.filter { $0.accessRule == nil }.map { "\($0.method) \($0.path.string)" }
                #expect(missing.isEmpty, "routes without an access rule: \(missing)")
                #expect(app.routes.all.count > 20)
            }
        }

        @Test func aRouteWithoutARuleIsRefused() async throws {
            try await withDermis { app, settings in
                app.get("forgotten") { _ in "should never be served" }
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                try await app.testing().test(.GET, "/forgotten", headers: admin) { res in
                    #expect(res.status == .forbidden)
                    #expect(!res.body.string.contains("should never be served"))
                }
            }
        }

        @Test(arguments: ["/patients", "/patients/new", "/plan", "/account", "/admin/staff", "/admin/audit"])
        func pagesSendStrangersToSignIn(path: String) async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.GET, path) { res in
                    #expect(res.status == .seeOther)
                    #expect(res.headers.first(name: .location)?.hasPrefix("/login?next=") == true)
                }
            }
        }

        @Test func theAPIAnswersStrangersWith401InJSON() async throws {
            try await withDermis { app, _ in
                try await app.testing().test(.GET, "/api/v1/patients") { res in
                    #expect(res.status == .unauthorized)
                    #expect(res.body.string.contains(#""error""#) && res.body.string.contains(#""code""#))
                }
            }
        }

        @Test(arguments: [(StaffRole.frontDesk, "/admin/staff"), (.practitioner, "/admin/staff"), (.frontDesk, "/admin/audit"),
                          (.practitioner, "/admin/audit")])
        func onlyAdminsReachAdministration(role: StaffRole, path: String) async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: role), clock: settings.clock)
                try await app.testing().test(.GET, path, headers: session) { res in
                    #expect(res.status == .forbidden)
                }
            }
        }

        @Test func anotherClinicsPatientIsNotFoundAndNeverListed() async throws {
            try await withDermis { app, settings in
                let other = Clinic(name: "Other Clinic", timeZone: "UTC", isDemo: false)
                try await other.create(on: app.db)
                let otherStaff = try await makeStaff(app, role: .frontDesk, clinicID: try other.requireID())
                let theirs = try await PatientRegistry(db: app.db, clinicID: try other.requireID()).create(
                    try PatientDetails(givenName: "Foreign", familyName: "Patient", dateOfBirth: "1980-01-01").validated(today: Fixture.today),
                    by: otherStaff.id, at: testNow)
                let session = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                for path in ["/api/v1/patients/\(theirs.id!)", "/patients/\(theirs.id!)", "/patients/\(theirs.id!)/edit"] {
                    try await app.testing().test(.GET, path, headers: session) { res in
                        #expect(res.status == .notFound, "\(path)")
                    }
                }
                try await app.testing().test(.PUT, "/api/v1/patients/\(theirs.id!)", headers: { var h = json(session); h.add(name: .ifMatch, value: "1"); return h }(),
                                             body: jsonBody(["givenName": "X", "familyName": "Y", "dateOfBirth": "1980-01-01"])) { res in
                    #expect(res.status == .notFound)
                }
                try await app.testing().test(.GET, "/api/v1/patients?q=Foreign", headers: session) { res in
                    #expect(res.status == .ok)
                    #expect(!res.body.string.contains("Foreign"))
                }
                let unchanged = try await Patient.find(theirs.id, on: app.db)
                #expect(unchanged?.givenName == "Foreign" && unchanged?.version == 1)
                // Their staff are out of reach too.
                for action in ["deactivate", "reset-totp"] {
                    try await app.testing().test(.POST, "/admin/staff/\(otherStaff.id)/\(action)", headers: session) { res in
                        #expect(res.status == .notFound)
                    }
                }
                let stillActive = try await StaffUser.find(otherStaff.id, on: app.db)
                #expect(stillActive?.active == true)
            }
        }
    }
}

enum Fixture {
    static let today = CalendarDate(year: 2026, month: 11, day: 27)!
}
