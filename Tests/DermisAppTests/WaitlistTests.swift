import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    @Suite struct Waitlist {
        func post(_ app: Application, _ path: String, _ headers: HTTPHeaders, _ fields: [(String, String)]) async throws -> (HTTPStatus, String) {
            var result: (HTTPStatus, String) = (.ok, "")
            try await app.testing().test(.POST, path, headers: headers.merging(formHeaders), body: form(fields)) { res in
                result = (res.status, res.body.string)
            }
            return result
        }

        func wait(_ app: Application, _ desk: HTTPHeaders, _ patient: Patient, service: String = "consultation", zones: [String] = [],
                  from: String = "2026-11-28", to: String = "2026-12-05", practitioner: UUID? = nil) async throws -> HTTPStatus {
            let location = try await Location.query(on: app.db).first()!.id!.uuidString
            var fields = [("patient", patient.id!.uuidString), ("location", location), ("service", service), ("earliest", from), ("latest", to),
                          ("practitioner", practitioner?.uuidString ?? "")]
            fields += zones.map { ("zones[]", $0) }
            return try await post(app, "/waitlist", desk, fields).0
        }

        /// The personal link in the newest waitlist message to `patient`.
        func offerLink(_ app: Application, _ patient: Patient) async throws -> String? {
            let message = try await OutboxMessage.query(on: app.db).filter(\.$patientID == patient.id).filter(\.$kind == "waitlist-offer")
                .sort(\.$createdAt, .descending).first()
            guard let line = message?.body.split(separator: "\n").first(where: { $0.contains("/waitlist/offer/") }) else { return nil }
            return String(line[line.range(of: "/waitlist/offer/")!.lowerBound...])
        }

        @Test func aCancelledTimeIsOfferedInOrderAndTheFirstToTakeItGetsItAndTheOthersAreTold() async throws {
            try await withDermis { app, settings in
                let deskHeaders = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let desk = TestClient(app: app, headers: deskHeaders)
                let patients = try await Patient.query(on: app.db).sort(\.$familyName).all()
                try #require(patients.count >= 4)
                for patient in patients where patient.email == nil {
                    patient.email = "\(patient.givenName.lowercased())@patient.test"
                    try await patient.save(on: app.db)
                }
                let (booked, first, second, third) = (patients[0], patients[1], patients[2], patients[3])
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                let made = try await desk.send(.POST, "/api/v1/appointments", ["location": location, "service": "consultation",
                                                                               "patient": booked.id!.uuidString, "start": "2026-11-30T09:00:00Z"])
                #expect(made.status == .created)
                let appointment = try #require(try await Appointment.query(on: app.db).first())
                // Bad entries are named, nothing stored; a second entry for the same service is refused.
                let bad = try await post(app, "/waitlist", deskHeaders, [("patient", first.id!.uuidString), ("location", location), ("service", "treatment"),
                                                                          ("earliest", "2026-12-05"), ("latest", "2026-12-01"), ("zones[]", "elbow")])
                #expect(bad.0 == .unprocessableEntity && bad.1.contains("data-field=\"latest\"") && bad.1.contains("data-field=\"zones\""))
                #expect(try await post(app, "/waitlist", deskHeaders, [("patient", ""), ("location", location), ("service", "consultation")]).0 == .unprocessableEntity)
                #expect(try await wait(app, deskHeaders, first, from: "2026-11-20", to: "2027-06-01") == .unprocessableEntity, "more than 120 days ahead")
                #expect(try await WaitlistEntry.query(on: app.db).count() == 0)
                // The order they asked in: first, second, third; a fourth entry wants another practitioner; a fifth wants other days.
                settings.manualClock.advance(by: 60)
                #expect(try await wait(app, deskHeaders, first) == .seeOther)
                #expect(try await wait(app, deskHeaders, first) == .conflict, "one entry per patient and service")
                settings.manualClock.advance(by: 60)
                #expect(try await wait(app, deskHeaders, second) == .seeOther)
                settings.manualClock.advance(by: 60)
                #expect(try await wait(app, deskHeaders, third) == .seeOther)
                let other = try #require(try await StaffUser.query(on: app.db).filter(\.$id != appointment.practitionerID)
                    .filter(\.$email ~~ ["ines.doctor@demo.dermis.test", "sam.nurse@demo.dermis.test"]).first())
                #expect(try await wait(app, deskHeaders, booked, practitioner: other.id) == .seeOther, "the cancelling patient is never offered their own time")
                var page = ""
                try await app.testing().test(.GET, "/waitlist?date=2026-11-30", headers: deskHeaders) { page = $0.body.string }
                #expect(page.contains(first.fullName) && page.contains(third.fullName))
                // The booking is cancelled: offered to the three, in order, by message.
                #expect(try await desk.send(.PATCH, "/api/v1/appointments/\(appointment.id!)", ["status": "cancelled"], ifMatch: appointment.version).status == .ok)
                let offers = try await WaitlistOffer.query(on: app.db).sort(\.$createdAt).all()
                #expect(offers.count == 3)
                let firstLink = try #require(try await offerLink(app, first))
                let secondLink = try #require(try await offerLink(app, second))
                let thirdLink = try #require(try await offerLink(app, third))
                #expect(try await offerLink(app, booked) == nil)
                try await app.testing().test(.GET, "/waitlist", headers: deskHeaders) { page = $0.body.string }
                #expect(page.contains("id=\"offers\""), "the front desk sees the offers in flight")
                var offerPage = ""
                try await app.testing().test(.GET, secondLink) { offerPage = $0.body.string }
                #expect(offerPage.contains("take-offer") && offerPage.contains("Mon 30 Nov"))
                // The second patient answers first and gets it; the first, answering later, is told it has gone.
                let (taken, takenPage) = try await post(app, secondLink, [:], [])
                #expect(taken == .ok && takenPage.contains("offer-booked"))
                let (late, latePage) = try await post(app, firstLink, [:], [])
                #expect(late == .conflict && latePage.contains("offer-gone"))
                #expect(try await post(app, secondLink, [:], []).0 == .conflict, "a second press books nothing more")
                let live = try await Appointment.query(on: app.db).filter(\.$status == "booked").all()
                #expect(live.count == 1 && live.first?.$patient.id == second.id && live.first?.startsAt == appointment.startsAt && live.first?.source == "waitlist")
                #expect(try await WaitlistEntry.query(on: app.db).filter(\.$patient.$id == second.id!).first()?.status == "booked")
                #expect(try await WaitlistEntry.query(on: app.db).filter(\.$patient.$id == first.id!).first()?.status == "waiting", "still waiting")
                // The others were told, once each; the winner got a confirmation.
                for loser in [first, third] {
                    #expect(try await OutboxMessage.query(on: app.db).filter(\.$patientID == loser.id).filter(\.$kind == "waitlist-gone").count() == 1)
                }
                #expect(try await OutboxMessage.query(on: app.db).filter(\.$patientID == second.id).filter(\.$kind == "booking-confirmed").count() == 1)
                try await app.testing().test(.GET, thirdLink) { offerPage = $0.body.string }
                #expect(offerPage.contains("offer-gone"))
                // A booking moved away frees its old time too: offered to whoever still waits (the first, who lost).
                let moved = try #require(live.first)
                let firstEntry = try #require(try await WaitlistEntry.query(on: app.db).filter(\.$patient.$id == first.id!).first())
                #expect(try await desk.send(.PATCH, "/api/v1/appointments/\(moved.id!)", ["start": "2026-12-01T09:00:00Z"], ifMatch: moved.version).status == .ok)
                let open = try await WaitlistOffer.query(on: app.db).filter(\.$entry.$id == firstEntry.id!).filter(\.$status == "offered").all()
                #expect(open.count == 1 && open.first?.startsAt == appointment.startsAt)
                // Unknown links are 404 and counted against the address.
                try await app.testing().test(.GET, "/waitlist/offer/not-a-real-token-but-long-enough") { #expect($0.status == .notFound) }
            }
        }

        @Test func aPatientAsksFromTheirOwnPagesAndTakingAnEarlierTimeReleasesTheirLaterBooking() async throws {
            try await withDermis { app, settings in
                let deskHeaders = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let desk = TestClient(app: app, headers: deskHeaders)
                let clinical = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let other = try #require(try await Patient.query(on: app.db).filter(\.$id != zoe.id!).first())
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                let portal = AppTests.Portal()
                let patient = try await portal.signIn(app)
                // Without a plan there is nothing to wait for.
                #expect(try await portal.get(app, "/my/waitlist", headers: patient).1.contains("waitlist-blocked"))
                try await Course(app: app, session: clinical, patientID: zoe.id!).ready()
                func book(_ who: Patient, _ start: String, _ zones: [String]) async throws -> TestClient.Reply {
                    try await desk.send(.POST, "/api/v1/appointments", ["location": location, "service": "treatment", "patient": who.id!.uuidString,
                                                                        "start": start, "zones": zones])
                }
                #expect(try await book(zoe, "2026-12-21T10:00:00Z", ["cheeks", "forehead"]).status == .created)
                #expect(try await book(other, "2026-12-02T09:00:00Z", ["cheeks", "forehead"]).status == .created)
                let page = try await portal.get(app, "/my/waitlist", headers: patient).1
                #expect(page.contains("id=\"replaces\"") && page.contains("Mon 21 Dec"), "she is told her later booking would be released")
                let bad = try await portal.post(app, "/my/waitlist", [("location", location), ("earliest", "2026-12-10"), ("latest", "2026-12-01")], headers: patient)
                #expect(bad.0 == .unprocessableEntity && bad.1.contains("data-field=\"latest\""))
                #expect(try await portal.post(app, "/my/waitlist", [("location", location), ("earliest", "2026-11-28"), ("latest", "2026-12-19")],
                                              headers: patient).0 == .seeOther)
                let entry = try #require(try await WaitlistEntry.query(on: app.db).first())
                #expect(entry.source == RecordSource.patientPortal && entry.zoneList == ["cheeks", "forehead"] && entry.replacesID != nil)
                #expect(try await portal.post(app, "/my/waitlist", [("location", location), ("earliest", "2026-11-28"), ("latest", "2026-12-19")],
                                              headers: patient).0 == .conflict, "once")
                // The other patient's 2 December time is given up: offered to Zoë, who takes it; her 21 December booking goes.
                let freed = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == other.id!).first())
                #expect(try await desk.send(.PATCH, "/api/v1/appointments/\(freed.id!)", ["status": "cancelled"], ifMatch: freed.version).status == .ok)
                let link = try #require(try await offerLink(app, zoe))
                let (taken, takenPage) = try await post(app, link, [:], [])
                #expect(taken == .ok && takenPage.contains("offer-booked"), "\(takenPage.prefix(400))")
                let hers = try await Appointment.query(on: app.db).filter(\.$patient.$id == zoe.id!).sort(\.$startsAt).all()
                #expect(hers.map(\.status) == ["booked", "cancelled"] && hers.first?.startsAt == freed.startsAt)
                #expect(try await WaitlistEntry.find(entry.id, on: app.db)?.status == "booked")
            }
        }

        @Test func aFreedTreatmentTimeIsNeverOfferedInsideAPatientsSeriesIntervalNorOnceItHasPassed() async throws {
            try await withDermis { app, settings in
                let deskHeaders = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let desk = TestClient(app: app, headers: deskHeaders)
                let clinical = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let others = try await Patient.query(on: app.db).filter(\.$id != zoe.id!).sort(\.$familyName).all()
                for patient in others where patient.email == nil {
                    patient.email = "\(patient.givenName.lowercased())@patient.test"
                    try await patient.save(on: app.db)
                }
                let (booked, free) = (others[0], others[1])
                // Zoë's forehead was treated today: her next forehead session is weeks away.
                let course = Course(app: app, session: clinical, patientID: zoe.id!)
                try await course.ready()
                _ = try await signedChart(app, course, settings)
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                #expect(try await desk.send(.POST, "/api/v1/appointments", ["location": location, "service": "treatment", "patient": booked.id!.uuidString,
                                                                            "start": "2026-12-02T09:00:00Z", "zones": ["forehead"]]).status == .created)
                #expect(try await wait(app, deskHeaders, zoe, service: "treatment", zones: ["forehead"]) == .seeOther)
                #expect(try await wait(app, deskHeaders, free, service: "treatment", zones: ["forehead"]) == .seeOther)
                let appointment = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == booked.id!).first())
                #expect(try await desk.send(.PATCH, "/api/v1/appointments/\(appointment.id!)", ["status": "cancelled"], ifMatch: appointment.version).status == .ok)
                #expect(try await offerLink(app, zoe) == nil, "inside her series interval: not offered")
                #expect(try await offerLink(app, free) != nil, "asked later, but offered")
                // A time already past when it is cancelled (09:00, cancelled at 10:00 that day) is offered to nobody, even to
                // someone waiting for that very day.
                let taken = try await post(app, try #require(try await offerLink(app, free)), [:], [])
                #expect(taken.0 == .ok)
                settings.manualClock.advance(by: 5 * 24 * 3600 - 30 * 60)   // Wednesday 2 December, 10:00
                #expect(try await wait(app, try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock), booked,
                                       service: "treatment", zones: ["forehead"], from: "2026-12-02", to: "2026-12-30") == .seeOther)
                let offers = try await WaitlistOffer.query(on: app.db).count()
                let past = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == free.id!).filter(\.$status == "booked").first())
                let again = TestClient(app: app, headers: try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock))
                #expect(try await again.send(.PATCH, "/api/v1/appointments/\(past.id!)", ["status": "cancelled"], ifMatch: past.version).status == .ok)
                #expect(try await WaitlistOffer.query(on: app.db).count() == offers)
            }
        }
    }
}
