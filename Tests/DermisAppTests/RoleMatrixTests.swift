import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R2, R21: least privilege, declared once as a matrix of route × role and checked against the route table — both
    /// the rule each route carries and what each role actually gets when it calls it.
    @Suite struct RoleMatrix {
        /// Who may call what. `all` = admin, practitioner and front desk; `clinical` = admin and practitioner; `admin`;
        /// the rest are the rules for people who are not (fully) signed in staff. Front desk sees demographics, bookings
        /// and whether a patient is ready — never intake answers, screening reasons, charts, consents, check-ins,
        /// photos, outcomes or adverse events.
        static let matrix = """
            GET /healthz                                                open
            GET /                                                       open
            GET /login                                                  open
            POST /login                                                 open
            GET /login/totp                                             signingIn
            POST /login/totp                                            signingIn
            POST /logout                                                signingIn
            GET /setup                                                  firstRun
            POST /setup                                                 firstRun
            GET /login/forgot                                           open
            POST /login/forgot                                          open
            GET /password/:token                                        open
            POST /password/:token                                       open
            GET /book                                                   open
            POST /book                                                  open
            GET /book/confirm/:token                                    open
            POST /book/confirm/:token                                   open
            GET /book/confirm/:token/calendar.ics                       open
            GET /unsubscribe/:patientID/:mac                            open
            POST /unsubscribe/:patientID/:mac                           open
            POST /webhooks/sms                                          open
            POST /webhooks/payments                                     open
            POST /book/confirm/:token/deposit                           open
            GET /metrics                                                open
            GET /healthz/live                                           open
            GET /care/:token                                            patientLink
            GET /my/sign-in                                             open
            POST /my/sign-in                                            open
            GET /my/link/:token                                         open
            POST /my/link/:token                                        open
            POST /my/sign-out                                           patient
            POST /my/sign-out-everywhere                                patient
            GET /my                                                     patient
            GET /my/expect                                              patient
            GET /my/intake                                              patient
            POST /my/intake                                             patient
            GET /my/consent                                             patient
            POST /my/consent                                            patient
            POST /my/questions                                          patient
            GET /my/book                                                patient
            POST /my/book                                               patient
            GET /my/appointments/:appointmentID/calendar.ics            patient
            GET /my/appointments/:appointmentID/move                    patient
            POST /my/appointments/:appointmentID/move                   patient
            POST /my/appointments/:appointmentID/cancel                 patient
            POST /my/appointments/:appointmentID/deposit                patient
            GET /my/appointments/:appointmentID/deposit/paid            patient
            GET /my/care/:chartID                                       patient
            GET /my/waitlist                                            patient
            POST /my/waitlist                                           patient
            POST /my/waitlist/:entryID/withdraw                         patient
            POST /my/care/:chartID/check-ins                            patient
            GET /my/progress                                            patient
            GET /my/photos/:photoID                                     patient
            GET /my/account                                             patient
            POST /patients/:patientID/portal/end                        all
            POST /patients/:patientID/questions/:questionID/answered    clinical
            POST /patients/:patientID/screenings/:screeningID/review    clinical
            POST /patients/:patientID/photos/:photoID/share             clinical
            POST /care/:token/check-ins                                 patientLink
            GET /account                                                all
            GET /account/totp                                           signingIn
            POST /account/totp                                          signingIn
            POST /account/tokens                                        all
            POST /account/tokens/:tokenID/revoke                        all
            GET /account/password                                       all
            POST /account/password                                      all
            GET /admin/staff                                            admin
            POST /admin/staff                                           admin
            POST /admin/staff/:staffID                                  admin
            POST /admin/staff/:staffID/reset-totp                       admin
            POST /admin/staff/:staffID/password-link                    admin
            POST /admin/staff/:staffID/deactivate                       admin
            POST /admin/staff/:staffID/activate                         admin
            GET /admin/audit                                            admin
            GET /admin/outbox                                           admin
            GET /admin/outbox/:messageID                                admin
            POST /admin/outbox/:messageID/retry                         admin
            GET /admin/messages                                         admin
            GET /admin/billing                                          admin
            POST /admin/billing                                         admin
            GET /invoices/export/:file                                  admin
            GET /invoices/reports                                       admin
            GET /invoices                                               all
            GET /invoices/:invoiceID                                    all
            POST /invoices/:invoiceID/payments                          all
            POST /invoices/:invoiceID/refund                            all
            GET /patients/:patientID/invoices/new                       all
            POST /patients/:patientID/invoices                          all
            POST /deposits/:depositID/release                           all
            POST /admin/billing/packages                                admin
            POST /admin/billing/packages/:offerID/retire                admin
            POST /patients/:patientID/packages                          all
            POST /packages/:packageID/refund                            all
            POST /admin/billing/memberships                             admin
            POST /admin/billing/memberships/:planID/retire              admin
            POST /patients/:patientID/memberships                       all
            POST /memberships/:membershipID/cancel                      all
            GET /waitlist                                               all
            POST /waitlist                                              all
            POST /waitlist/:entryID/withdraw                            all
            GET /waitlist/offer/:token                                  open
            POST /waitlist/offer/:token                                 open
            POST /admin/messages/rules                                  admin
            GET /admin/messages/templates/:kind                         admin
            POST /admin/messages/templates/:kind                        admin
            GET /admin/schedule                                         admin
            POST /admin/schedule/locations                              admin
            POST /admin/schedule/rooms                                  admin
            POST /admin/schedule/closures                               admin
            POST /admin/schedule/hours                                  admin
            POST /admin/schedule/leave                                  admin
            POST /admin/schedule/services                               admin
            POST /admin/schedule/pens                                   admin
            GET /api/v1/locations                                       all
            POST /api/v1/locations                                      admin
            POST /api/v1/locations/:locationID/rooms                    admin
            POST /api/v1/locations/:locationID/closures                 admin
            PUT /api/v1/staff/:staffID/hours                            admin
            POST /api/v1/staff/:staffID/leave                           admin
            GET /api/v1/services                                        all
            POST /api/v1/services                                       admin
            PUT /api/v1/devices/:deviceID/location                      admin
            GET /admin/inventory                                        admin
            POST /admin/inventory/devices                               admin
            POST /admin/inventory/devices/:deviceID/active              admin
            POST /admin/inventory/lots                                  admin
            GET /admin/inventory/lots/:lotID                            admin
            POST /admin/inventory/lots/:lotID/recall                    admin
            GET /admin/consent                                          admin
            POST /admin/consent                                         admin
            GET /patients                                               all
            POST /patients                                              all
            GET /patients/new                                           all
            GET /patients/:patientID                                    all
            POST /patients/:patientID                                   all
            GET /patients/:patientID/messages                           all
            POST /patients/:patientID/messages                          all
            POST /patients/:patientID/messages/resume-email             all
            GET /patients/:patientID/edit                               all
            POST /patients/:patientID/archive                           all
            POST /patients/:patientID/restore                           all
            GET /api/v1/patients                                        all
            POST /api/v1/patients                                       all
            GET /api/v1/patients/:patientID                             all
            PUT /api/v1/patients/:patientID                             all
            GET /patients/:patientID/course                             all
            GET /patients/:patientID/intake/new                         all
            POST /patients/:patientID/intake                            all
            POST /api/v1/patients/:patientID/intakes                    all
            GET /api/v1/patients/:patientID/readiness                   all
            GET /patients/:patientID/screenings/:screeningID            clinical
            POST /patients/:patientID/screenings/:screeningID/overrides clinical
            GET /api/v1/patients/:patientID/screenings/latest           clinical
            GET /plan                                                   all
            POST /plan                                                  all
            POST /api/v1/screen                                         all
            POST /api/v1/plan                                           all
            GET /patients/:patientID/plans/new                          clinical
            POST /patients/:patientID/plans/preview                     clinical
            POST /patients/:patientID/plans                             clinical
            POST /api/v1/patients/:patientID/plans                      clinical
            GET /patients/:patientID/plans/:planID/consent              all
            POST /patients/:patientID/plans/:planID/consent             all
            POST /api/v1/patients/:patientID/plans/:planID/consents     all
            GET /patients/:patientID/consents/:consentID                clinical
            POST /patients/:patientID/sessions                          clinical
            GET /patients/:patientID/sessions/:chartID                  clinical
            POST /patients/:patientID/sessions/:chartID                 clinical
            POST /patients/:patientID/sessions/:chartID/numbing         clinical
            POST /patients/:patientID/sessions/:chartID/sign            clinical
            POST /patients/:patientID/sessions/:chartID/amend           clinical
            POST /api/v1/patients/:patientID/sessions                   clinical
            GET /api/v1/patients/:patientID/sessions/:chartID           clinical
            PUT /api/v1/patients/:patientID/sessions/:chartID           clinical
            POST /api/v1/patients/:patientID/sessions/:chartID/numbing  clinical
            POST /api/v1/patients/:patientID/sessions/:chartID/sign     clinical
            POST /api/v1/patients/:patientID/sessions/:chartID/amendments clinical
            GET /patients/:patientID/sessions/:chartID/follow-up        clinical
            POST /patients/:patientID/sessions/:chartID/link            clinical
            POST /patients/:patientID/sessions/:chartID/link/revoke     clinical
            POST /patients/:patientID/sessions/:chartID/outcomes        clinical
            GET /api/v1/patients/:patientID/sessions/:chartID/aftercare clinical
            POST /api/v1/patients/:patientID/sessions/:chartID/link     clinical
            GET /api/v1/patients/:patientID/sessions/:chartID/check-ins clinical
            PUT /api/v1/patients/:patientID/sessions/:chartID/outcomes  clinical
            GET /today                                                  all
            POST /admin/schedule/notice                                 admin
            GET /reports                                                clinical
            GET /api/v1/reports/outcomes                                clinical
            GET /api/v1/reports/safety                                  clinical
            GET /api/v1/reports/operations                              clinical
            GET /api/v1/reports/outcomes.csv                            clinical
            GET /api/v1/reports/safety.csv                              clinical
            GET /api/v1/reports/utilisation.csv                         clinical
            GET /api/v1/reports/attendance.csv                          clinical
            GET /api/v1/reports/series.csv                              clinical
            GET /api/v1/reports/cartridges.csv                          clinical
            GET /adverse-events                                         clinical
            GET /adverse-events.csv                                     clinical
            GET /adverse-events/:eventID                                clinical
            POST /adverse-events/:eventID                               clinical
            POST /patients/:patientID/sessions/:chartID/adverse-events  clinical
            GET /api/v1/adverse-events                                  clinical
            PATCH /api/v1/adverse-events/:eventID                       clinical
            GET /patients/:patientID/photos                             clinical
            POST /patients/:patientID/photos                            clinical
            GET /patients/:patientID/photos/compare                     clinical
            GET /patients/:patientID/photos/:photoID                    clinical
            GET /api/v1/patients/:patientID/photos                      clinical
            POST /api/v1/patients/:patientID/photos                     clinical
            GET /calendar                                               all
            GET /appointments/new                                       all
            POST /appointments                                          all
            GET /appointments/:appointmentID                            all
            POST /appointments/:appointmentID/status                    all
            POST /appointments/:appointmentID/move                      all
            GET /appointments/:appointmentID/calendar.ics               all
            POST /patients/:patientID/series                            all
            GET /api/v1/availability                                    all
            GET /api/v1/appointments                                    all
            POST /api/v1/appointments                                   all
            GET /api/v1/appointments/:appointmentID                     all
            PATCH /api/v1/appointments/:appointmentID                   all
            POST /api/v1/patients/:patientID/series                     all
            GET /api/v1/openapi.json                                    open
            POST /api/v1/patients/import                                all
            GET /api/v1/patients.csv                                    all
            GET /api/v1/appointments.csv                                all
            GET /fhir/R4/metadata                                       open
            GET /fhir/R4/:type                                          all
            POST /fhir/R4/:type                                         all
            POST /fhir/R4/:type/_search                                 all
            GET /fhir/R4/:type/:id                                      all
            PUT /fhir/R4/:type/:id                                      all
            GET /fhir/R4/:type/:id/_history                             all
            GET /fhir/R4/:type/:id/_history/:version                    all
            GET /fhir/R4/:type/:id/:operation                           all
            GET /fhir/bulk/:jobID                                       clinical
            DELETE /fhir/bulk/:jobID                                    clinical
            GET /fhir/bulk/:jobID/:file                                 clinical
            """

        static func declared() -> [String: String] {
            var rules: [String: String] = [:]
            for line in matrix.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                rules["\(parts[0]) \(parts[1])"] = String(parts[2])
            }
            return rules
        }

        static func name(of rule: AccessRule?) -> String {
            switch rule {
            case .open: "open"
            case .firstRun: "firstRun"
            case .signingIn: "signingIn"
            case .patientLink: "patientLink"
            case .patient: "patient"
            case let .staff(roles, _):
                roles == AccessRule.anyStaff ? "all" : (roles == AccessRule.clinical ? "clinical" : (roles == AccessRule.admins ? "admin" : "\(roles)"))
            case nil: "none"
            }
        }

        static func allowed(_ declared: String) -> Set<StaffRole> {
            switch declared {
            case "all": AccessRule.anyStaff
            case "clinical": AccessRule.clinical
            case "admin": AccessRule.admins
            default: []
            }
        }

        @Test func everyRouteCarriesTheRuleTheMatrixDeclares() async throws {
            try await withDermis { app, _ in
                let declared = Self.declared()
                var seen: Set<String> = []
                for route in app.routes.all {
                    let key = "\(route.method) /\(route.path.map(\.description).joined(separator: "/"))"
                    seen.insert(key)
                    #expect(declared[key] != nil, "\(key) is not in the matrix: declare who may call it")
                    if let expected = declared[key] { #expect(Self.name(of: route.accessRule) == expected, "\(key)") }
                }
                #expect(Set(declared.keys).subtracting(seen).isEmpty, "declared but not served: \(Set(declared.keys).subtracting(seen).sorted())")
            }
        }

        /// Every staff route, called by each role for real: a role outside the matrix is refused for its role, a role in
        /// it is not (it may still get 404 or 422 for the made-up ids and empty bodies).
        @Test func everyRoleGetsExactlyWhatTheMatrixSays() async throws {
            try await withDermis { app, settings in
                let sessions: [StaffRole: HTTPHeaders] = [
                    .admin: try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock),
                    .practitioner: try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock),
                    .frontDesk: try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock),
                ]
                let patient = try #require(try await Patient.query(on: app.db).first()?.requireID())
                let declared = Self.declared()
                var calls = 0
                for route in app.routes.all {
                    let key = "\(route.method) /\(route.path.map(\.description).joined(separator: "/"))"
                    guard case .staff = route.accessRule, let rule = declared[key] else { continue }
                    let path = "/" + route.path.map { component -> String in
                        guard case .parameter(let name) = component else { return component.description }
                        return name == "patientID" ? patient.uuidString : UUID().uuidString
                    }.joined(separator: "/")
                    for (role, session) in sessions {
                        var headers = json(session)
                        headers.replaceOrAdd(name: .ifMatch, value: "W/\"1\"")
                        let body: ByteBuffer? = [.GET, .HEAD].contains(route.method) ? nil : ByteBuffer(string: "{}")
                        try await app.testing().test(route.method, path, headers: headers, body: body) { res in
                            let refusedForRole = res.status == .forbidden && res.body.string.contains("Your role may not do this")
                            let allowed = Self.allowed(rule).contains(role)
                            #expect(refusedForRole == !allowed, "\(role.rawValue) \(key): \(res.status)")
                            #expect(res.status != .unauthorized, "\(role.rawValue) \(key): signed in, yet 401")
                        }
                        calls += 1
                    }
                }
                #expect(calls > 250)
            }
        }

        @Test func frontDeskSeesWhetherAPatientIsReadyButNoneOfTheClinicalContent() async throws {
            try await withDermis { app, settings in
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let practitioner = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                // Front desk collects an intake (a deferral: isotretinoin stopped in June) and lands on the course, not the screening.
                let patient = try #require(try await Patient.query(on: app.db).first()?.requireID())
                var headers = desk
                headers.replaceOrAdd(name: .contentType, value: "application/x-www-form-urlencoded")
                try await app.testing().test(.POST, "/patients/\(patient)/intake", headers: headers, body: form([
                    ("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "2"), ("zone", "cheeks"), ("condition", "herpes-simplex"),
                    ("medication.isotretinoin", "stopped"), ("lastDose.isotretinoin", "2026-06-01"), ("medication.anticoagulant", "none"),
                ])) { res in
                    #expect(res.status == .seeOther && res.headers.first(name: .location) == "/patients/\(patient)/course")
                }
                let screening = try #require(try await ScreeningRecord.query(on: app.db).filter(\.$patient.$id == patient).first())
                #expect(try !screening.screening.reasons.isEmpty)
                let client = TestClient(app: app, headers: desk)
                let readiness = try await client.send(.GET, "/api/v1/patients/\(patient)/readiness")
                #expect(readiness.status == .ok && readiness.object["screened"] as? Bool == true && readiness.object["cleared"] as? Bool == false)
                #expect(!readiness.text.contains("isotretinoin"))
                #expect(try await client.send(.GET, "/api/v1/patients/\(patient)/screenings/latest").status == .forbidden)
                let reasons = try screening.screening.reasons.map(\.message) + screening.screening.precautions.map(\.message)
                var deskCourse = ""
                try await app.testing().test(.GET, "/patients/\(patient)/course", headers: desk) { res in
                    #expect(res.status == .ok)
                    deskCourse = res.body.string
                }
                var clinicalCourse = ""
                try await app.testing().test(.GET, "/patients/\(patient)/course", headers: practitioner) { clinicalCourse = $0.body.string }
                #expect(deskCourse.contains("data-step=\"Screening\""))
                for reason in reasons { #expect(!deskCourse.contains(reason)) }
                #expect(!deskCourse.contains("/screenings/") && !deskCourse.contains("/sessions/") && !deskCourse.contains("/photos"))
                #expect(clinicalCourse.contains("/screenings/"), "the practitioner's page links the screening")
                // The intake form front desk opens is blank; the practitioner's starts from the last answers.
                var deskIntake = ""
                var clinicalIntake = ""
                try await app.testing().test(.GET, "/patients/\(patient)/intake/new", headers: desk) { deskIntake = $0.body.string }
                try await app.testing().test(.GET, "/patients/\(patient)/intake/new", headers: practitioner) { clinicalIntake = $0.body.string }
                #expect(clinicalIntake.components(separatedBy: "checked").count > deskIntake.components(separatedBy: "checked").count)
            }
        }

        @Test func onlyClinicalStaffOverrideTheSeriesInterval() async throws {
            try await withDermis { app, settings in
                let desk = TestClient(app: app, headers: try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock))
                let patient = try #require(try await Patient.query(on: app.db).first()?.requireID())
                let location = try #require(try await Location.query(on: app.db).first()?.requireID())
                let reply = try await desk.send(.POST, "/api/v1/appointments", [
                    "location": location.uuidString, "service": "treatment", "patient": patient.uuidString,
                    "start": "2026-12-02T10:00:00Z", "zones": ["cheeks"], "overrideReason": "Patient travels abroad next month"])
                #expect(reply.status == .forbidden && reply.text.contains("override the series interval"))
                let denied = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Appointment")
                    .filter(\.$outcome == AuditOutcome.denied.rawValue).count()
                #expect(denied == 1)
            }
        }
    }
}
