import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// One database, two clinics side by side: each sees its own name, patients, staff, schedule, audit log and
    /// calendar day — never the other's, and never the first clinic's because it happened to be created first.
    @Suite struct TwoClinics {
        struct Hudson {
            let clinic: Clinic
            let admin: TestStaff
            let practitioner: TestStaff
            let patient: Patient
        }

        /// The demo's Harbour Skin Clinic (London) is first; Hudson Skin (New York) is added beside it.
        func hudson(_ app: Application, _ settings: DermisSettings) async throws -> Hudson {
            let clinic = try await StaffAccounts.clinic(named: "Hudson Skin", timeZone: "America/New_York", new: true, on: app.db)
            let id = try clinic.requireID()
            let admin = try await makeStaff(app, role: .admin, clinicID: id)
            let practitioner = try await makeStaff(app, role: .practitioner, clinicID: id)
            let pen = try await Inventory(db: app.db, clinicID: id)
                .register(model: "Pen", serial: "HUDSON-PEN-1", profile: "skinpen", protocol: app.dermis.clinicalProtocol, at: settings.clock.now())
            _ = try await DemoClinic.seedSchedule(clinicID: id, practitioners: [practitioner.id], pen: pen, on: app.db)
            let details = try PatientDetails(givenName: "Bea", familyName: "Hudson", dateOfBirth: "1990-05-05")
                .validated(today: CalendarDate(iso: "2026-11-27")!)
            let patient = try await PatientRegistry(db: app.db, clinicID: id).create(details, by: admin.id, at: settings.clock.now())
            return Hudson(clinic: clinic, admin: admin, practitioner: practitioner, patient: patient)
        }

        @Test func eachClinicSeesOnlyItsOwn() async throws {
            try await withDermis { app, settings in
                let hudson = try await hudson(app, settings)
                let harbourAdmin = try await makeStaff(app, role: .admin)
                let a = try await signIn(app, harbourAdmin, clock: settings.clock)
                let b = try await signIn(app, hudson.admin, clock: settings.clock)
                // Each page header names the signed-in person's clinic.
                var pageB = ""
                try await app.testing().test(.GET, "/patients", headers: b) { pageB = $0.body.string }
                #expect(pageB.contains("Hudson Skin") && !pageB.contains("Harbour Skin Clinic"))
                // Patients: Bea is Hudson's; Harbour's admin gets 404 for her, and the list shows neither clinic the other's.
                let bea = try hudson.patient.requireID()
                try await app.testing().test(.GET, "/api/v1/patients/\(bea)", headers: a) { #expect($0.status == .notFound) }
                try await app.testing().test(.GET, "/api/v1/patients/\(bea)", headers: b) { #expect($0.status == .ok) }
                try await app.testing().test(.GET, "/api/v1/patients", headers: b) { res in
                    #expect(res.body.string.contains("Hudson") && !res.body.string.contains("Lefèvre"))
                }
                // The booking page offers only the clinic's own practitioners.
                try await app.testing().test(.GET, "/appointments/new", headers: b) { res in
                    #expect(res.body.string.contains(hudson.practitioner.user.name) && !res.body.string.contains("Inês"))
                }
                // The audit page: each admin reads their own clinic's chain.
                var auditA = "", auditB = ""
                try await app.testing().test(.GET, "/admin/audit", headers: a) { auditA = $0.body.string }
                try await app.testing().test(.GET, "/admin/audit", headers: b) { auditB = $0.body.string }
                #expect(auditA.contains(harbourAdmin.user.email) && !auditA.contains(hudson.admin.user.email))
                #expect(auditB.contains(hudson.admin.user.email) && auditB.contains(bea.uuidString) && !auditB.contains(harbourAdmin.user.email))
            }
        }

        @Test func eachClinicKeepsItsOwnCalendarDay() async throws {
            try await withDermis { app, settings in
                let hudson = try await hudson(app, settings)
                // 03:00 UTC on the 28th: already the 28th in London, still the 27th in New York.
                settings.manualClock.advance(by: 17 * 3600)
                let course = Course(app: app, session: try await signIn(app, hudson.practitioner, clock: settings.clock),
                                    patientID: try hudson.patient.requireID())
                var intake = Course.eligibleIntake
                intake["dateOfBirth"] = hudson.patient.dateOfBirth
                try await course.intake(intake)
                let screening = try #require(try await ScreeningRecord.query(on: app.db).first())
                #expect(screening.screenedOn == "2026-11-27", "screened on the Hudson clinic's day, not London's")
            }
        }

        @Test func onlineBookingServesTheClinicItIsAskedFor() async throws {
            try await withDermis { app, settings in
                let hudson = try await hudson(app, settings)
                // Two clinics and none named: not the first one by default.
                try await app.testing().test(.GET, "/book") { #expect($0.status == .notFound) }
                try await app.testing().test(.GET, "/book?clinic=\(UUID())") { #expect($0.status == .notFound) }
                let id = try hudson.clinic.requireID()
                try await app.testing().test(.GET, "/book?clinic=\(id)") { res in
                    #expect(res.status == .ok && res.body.string.contains("Book online with Hudson Skin"))
                    #expect(res.body.string.contains(#"name="clinic" value="\#(id)""#))
                }
            }
        }
    }
}
