import DermisCore
import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// Booking on the demo clinic's Harbourside location: availability, the no-overlap guard (R14), moves, statuses,
    /// the series rule and series booking.
    @Suite struct Scheduling {
        struct Desk {
            let app: Application
            let headers: HTTPHeaders
            let location: UUID
            let ines: UUID
            let sam: UUID

            func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil, ifMatch: Int? = nil) async throws -> (HTTPStatus, Any?, String) {
                let reply = try await TestClient(app: app, headers: headers).send(method, path, body, ifMatch: ifMatch)
                return (reply.status, reply.json, reply.text)
            }

            func slots(_ service: String = "consultation", on day: String, zones: String = "", patient: UUID? = nil,
                       practitioner: UUID? = nil) async throws -> [[String: Any]] {
                var path = "/api/v1/availability?location=\(location)&service=\(service)&from=\(day)&to=\(day)&zones=\(zones)"
                if let patient { path += "&patient=\(patient)" }
                if let practitioner { path += "&practitioner=\(practitioner)" }
                let (status, body, text) = try await call(.GET, path)
                #expect(status == .ok, "\(text)")
                return (body as? [String: Any])?["slots"] as? [[String: Any]] ?? []
            }

            func book(_ start: String, service: String = "consultation", practitioner: UUID? = nil, patient: UUID? = nil,
                      zones: [String] = [], extra: [String: Any] = [:]) async throws -> (HTTPStatus, [String: Any], String) {
                var body: [String: Any] = ["location": location.uuidString, "service": service, "start": start, "zones": zones]
                if let practitioner { body["practitioner"] = practitioner.uuidString }
                if let patient { body["patient"] = patient.uuidString }
                body.merge(extra) { $1 }
                let (status, json, text) = try await call(.POST, "/api/v1/appointments", body)
                return (status, json as? [String: Any] ?? [:], text)
            }
        }

        func desk(_ app: Application, _ settings: DermisSettings, role: StaffRole = .frontDesk) async throws -> Desk {
            let staff = try await makeStaff(app, role: role)
            let headers = try await signIn(app, staff, clock: settings.clock)
            let location = try await Location.query(on: app.db).first()!
            let ines = try await StaffUser.query(on: app.db).filter(\.$email == "ines.doctor@demo.dermis.test").first()!
            let sam = try await StaffUser.query(on: app.db).filter(\.$email == "sam.nurse@demo.dermis.test").first()!
            return Desk(app: app, headers: headers, location: location.id!, ines: ines.id!, sam: sam.id!)
        }

        /// Overlapping holding bookings of one resource, found by a self-join: R14's invariant says none.
        static func overlaps(_ db: any Database) async throws -> Int {
            let sql = db as! any SQLDatabase
            var total = 0
            for column in ["practitioner_id", "room_id", "pen_id"] {
                let rows = try await sql.raw("""
                    SELECT COUNT(*) AS n FROM appointment a JOIN appointment b ON a.id < b.id AND a.\(unsafeRaw: column) = b.\(unsafeRaw: column)
                    WHERE a.status IN \(unsafeRaw: AppointmentStatus.holdingSQL) AND b.status IN \(unsafeRaw: AppointmentStatus.holdingSQL)
                    AND a.starts_at < b.holds_until AND b.starts_at < a.holds_until
                    """).all()
                total += try rows.first?.decode(column: "n", as: Int.self) ?? 0
            }
            return total
        }

        // Monday 2026-11-30 in London (UTC in winter): Inês works 09:00–17:30 with lunch 12:30–13:00.
        let monday = "2026-11-30"

        @Test func availabilityOffersWallClockStartsOnTheGrid() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings)
                let slots = try await desk.slots(on: monday, practitioner: desk.ines)
                let starts = slots.compactMap { $0["start"] as? String }
                #expect(starts.first == "2026-11-30T09:00:00Z" && starts.last == "2026-11-30T17:00:00Z")
                #expect(!starts.contains("2026-11-30T12:15:00Z") && !starts.contains("2026-11-30T12:30:00Z"), "lunch")
                #expect(starts.contains("2026-11-30T13:00:00Z"))
                // Sam does not work Mondays.
                #expect(try await desk.slots(on: monday, practitioner: desk.sam).isEmpty)
                let (bad, body, _) = try await desk.call(.GET, "/api/v1/availability?location=\(desk.location)&service=massage&from=\(monday)")
                #expect(bad == .unprocessableEntity && ((body as? [String: Any])?["error"] as? [String: Any])?["field"] as? String == "service")
                // A treatment of three zones books the engine's appointment time.
                let (_, treatment, _) = try await desk.call(.GET, "/api/v1/availability?location=\(desk.location)&service=treatment&from=\(monday)&zones=cheeks,forehead,chin")
                let minutes = try Planning.appointmentMinutes(zones: ["cheeks", "forehead", "chin"], protocol: app.dermis.clinicalProtocol)
                #expect((treatment as? [String: Any])?["minutes"] as? Int == minutes)
            }
        }

        @Test func aTakenSlotIsRefusedWithTheNextFreeTimesAndBackToBackIsAllowed() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings)
                let (first, booked, text) = try await desk.book("2026-11-30T10:00:00Z", practitioner: desk.ines)
                #expect(first == .created, "\(text)")
                #expect(booked["status"] as? String == "booked")
                let (again, conflict, _) = try await desk.book("2026-11-30T10:00:00Z", practitioner: desk.ines)
                #expect(again == .conflict)
                let alternatives = conflict["alternatives"] as? [[String: Any]] ?? []
                #expect(alternatives.first?["start"] as? String == "2026-11-30T10:30:00Z", "the next free time, back to back")
                #expect(try await desk.book("2026-11-30T10:30:00Z", practitioner: desk.ines).0 == .created)
                #expect(try await desk.book("2026-11-30T09:30:00Z", practitioner: desk.ines).0 == .created, "back to back before")
                #expect(try await desk.book("2026-11-30T12:30:00Z", practitioner: desk.ines).0 == .conflict, "lunch")
                #expect(try await desk.book("2026-11-30T08:00:00Z", practitioner: desk.ines).0 == .conflict, "before opening")
                #expect(try await Self.overlaps(app.db) == 0)
            }
        }

        @Test func fiftyConcurrentBookingsForOneSlotLetExactlyOneIn() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings)
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for _ in 0..<50 {
                        group.addTask { try await desk.book("2026-11-30T11:00:00Z", practitioner: desk.ines).0 }
                    }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == .created }.count == 1)
                #expect(statuses.filter { $0 == .conflict }.count == 49)
                #expect(try await Appointment.query(on: app.db).count() == 1)
            }
        }

        @Test func randomBookMoveCancelSequencesNeverOverlap() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings)
                var rng = SplitMix64(seed: 20261127)
                var live: [(id: String, version: Int)] = []
                let days = ["2026-11-30", "2026-12-01"]
                for _ in 0..<60 {
                    let day = days[Int.random(in: 0..<2, using: &rng)]
                    let start = String(format: "%@T%02d:%02d:00Z", day, Int.random(in: 9...16, using: &rng), [0, 15, 30, 45][Int.random(in: 0..<4, using: &rng)])
                    let who = Bool.random(using: &rng) ? desk.ines : desk.sam
                    switch Int.random(in: 0..<10, using: &rng) {
                    case 0..<6:
                        let (status, body, _) = try await desk.book(start, service: Bool.random(using: &rng) ? "consultation" : "review", practitioner: who)
                        #expect([.created, .conflict].contains(status))
                        if status == .created { live.append((body["id"] as! String, body["version"] as! Int)) }
                    case 6..<8 where !live.isEmpty:
                        let i = Int.random(in: 0..<live.count, using: &rng)
                        let (status, body, _) = try await desk.call(.PATCH, "/api/v1/appointments/\(live[i].id)", ["start": start], ifMatch: live[i].version)
                        #expect([.ok, .conflict].contains(status))
                        if status == .ok { live[i].version = (body as! [String: Any])["version"] as! Int }
                    case 8..<10 where !live.isEmpty:
                        let i = Int.random(in: 0..<live.count, using: &rng)
                        let (status, _, _) = try await desk.call(.PATCH, "/api/v1/appointments/\(live[i].id)", ["status": "cancelled"], ifMatch: live[i].version)
                        #expect(status == .ok)
                        live.remove(at: i)
                    default:
                        break
                    }
                    #expect(try await Self.overlaps(app.db) == 0)
                }
                #expect(live.count > 5, "the sequence booked something")
            }
        }

        @Test func aSeriesBooksWithItsIntervalNeverShortened() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings, role: .practitioner)
                try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").set(\.$email, to: "zoe@example.test").update()
                let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                try await Course(app: app, session: desk.headers, patientID: zoe.id!).ready()
                let plan = try await TreatmentPlanRecord.query(on: app.db).first()!.plan
                let interval = plan.series.minIntervalDays
                // The day the second session would fall on is closed: it moves to the next free day, never earlier.
                let closed = CalendarDate(iso: "2026-12-01")!.adding(days: interval)
                #expect(try await desk.call(.POST, "/api/v1/locations/\(desk.location)/closures", ["day": closed.description]).0 == .forbidden,
                        "only admins set closures")
                let closure = Closure()
                closure.$location.id = desk.location
                closure.day = closed.description
                closure.reason = "Staff training"
                try await closure.create(on: app.db)
                let (status, body, text) = try await desk.call(.POST, "/api/v1/patients/\(zoe.id!)/series",
                                                               ["location": desk.location.uuidString, "service": "treatment", "first": "2026-12-01T09:00:00Z"])
                #expect(status == .created, "\(text)")
                let appointments = ((body as? [String: Any])?["appointments"] as? [[String: Any]]) ?? []
                #expect(appointments.count == plan.series.sessions)
                let zone = TimeZone(identifier: "Europe/London")!
                let days = appointments.compactMap { ($0["start"] as? String).flatMap { try? Date($0, strategy: .iso8601) } }.map { CalendarDate($0, in: zone) }
                #expect(days.first?.description == "2026-12-01")
                for (earlier, later) in zip(days, days.dropFirst()) { #expect(earlier.days(until: later) >= interval) }
                #expect(days.count > 1 && days[1] == closed.adding(days: 1), "the closed day is skipped to the next, not before")
                // The patient hears of the series once: every session's time, and one calendar file with them all.
                let seriesID = try #require(UUID(uuidString: (body as? [String: Any])?["seriesID"] as? String ?? ""))
                let told = try await OutboxMessage.query(on: app.db).filter(\.$patientID == zoe.id!).all()
                #expect(told.filter { $0.kind == "booking-confirmed" }.isEmpty, "no confirmation per session")
                let summary = try #require(told.first { $0.kind == "series-booked" })
                #expect(summary.subjectID == seriesID && summary.subject.contains("\(plan.series.sessions) sessions"))
                #expect(summary.calendar?.components(separatedBy: "BEGIN:VEVENT").count == plan.series.sessions + 1)
                #expect(summary.body.components(separatedBy: "\n– ").count == plan.series.sessions + 1)
                // Another treatment of the cheeks inside the interval is refused, with the rule; an override books it.
                let inside = "2026-12-10T10:00:00Z"
                let (refused, conflict, _) = try await desk.book(inside, service: "treatment", patient: zoe.id!, zones: ["cheeks"])
                #expect(refused == .conflict && (((conflict["error"] as? [String: Any])?["message"] as? String)?.contains("days") == true))
                let (overridden, _, overrideText) = try await desk.book(inside, service: "treatment", patient: zoe.id!, zones: ["cheeks"],
                                                                        extra: ["overrideReason": "Physician review: scar needs a touch-up before travel"])
                #expect(overridden == .created, "\(overrideText)")
                #expect(try await Self.overlaps(app.db) == 0)
            }
        }

        // MARK: The admin's set-up page

        @Test func anAdminSetsUpALocationAWeekAndLeaveFromThePage() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                let headers = try await signIn(app, admin, clock: settings.clock).merging(formHeaders)
                func post(_ path: String, _ fields: [(String, String)]) async throws -> (HTTPStatus, String) {
                    var result: (HTTPStatus, String) = (.ok, "")
                    try await app.testing().test(.POST, "/admin/schedule/\(path)", headers: headers, body: form(fields)) { res in
                        result = (res.status, res.body.string)
                    }
                    return result
                }
                let (badZone, badPage) = try await post("locations", [("name", "Northside"), ("timeZone", "Mars/Olympus")])
                #expect(badZone == .unprocessableEntity && badPage.contains("data-field=\"timeZone\""))
                #expect(try await Location.query(on: app.db).count() == 1)
                #expect(try await post("locations", [("name", "Northside"), ("timeZone", "America/New_York"), ("phone", "+1 212 555 0100")]).0 == .seeOther)
                let north = try #require(try await Location.query(on: app.db).filter(\.$name == "Northside").first())
                #expect(try await post("rooms", [("location", north.id!.uuidString), ("name", "Suite A")]).0 == .seeOther)
                let sam = try await StaffUser.query(on: app.db).filter(\.$email == "sam.nurse@demo.dermis.test").first()!
                // A day whose end is before its start is refused by name, and the week is not replaced.
                let (badWeek, weekPage) = try await post("hours", [("practitioner", sam.id!.uuidString), ("location", north.id!.uuidString),
                                                                   ("start1", "12:00"), ("end1", "09:00")])
                #expect(badWeek == .unprocessableEntity && weekPage.contains("data-field=\"end1\"") && weekPage.contains("Monday"))
                #expect(try await post("hours", [("practitioner", sam.id!.uuidString), ("location", north.id!.uuidString),
                                                 ("start1", "09:00"), ("end1", "12:00"), ("breakStart1", "10:00"), ("breakEnd1", "10:30")]).0 == .seeOther)
                let (noMinutes, _) = try await post("services", [("code", "quick-look"), ("name", "Quick look"), ("kind", "review")])
                #expect(noMinutes == .unprocessableEntity)
                let desk = try await desk(app, settings)
                func starts(_ day: String) async throws -> [String] {
                    let (_, body, _) = try await desk.call(.GET, "/api/v1/availability?location=\(north.id!)&service=consultation&from=\(day)&to=\(day)&grid=30")
                    return ((body as? [String: Any])?["slots"] as? [[String: Any]] ?? []).compactMap { $0["start"] as? String }
                }
                // New York is UTC-5 in winter: 09:00, 09:30 and 10:30, 11:00, 11:30 local.
                #expect(try await starts(monday) == ["2026-11-30T14:00:00Z", "2026-11-30T14:30:00Z", "2026-11-30T15:30:00Z", "2026-11-30T16:00:00Z", "2026-11-30T16:30:00Z"])
                #expect(try await post("leave", [("practitioner", sam.id!.uuidString), ("from", "2026-11-30"), ("to", "2026-11-30")]).0 == .seeOther)
                #expect(try await starts(monday).isEmpty, "on leave")
                #expect(try await starts("2026-12-07").count == 5)
                var status: HTTPStatus = .ok
                try await app.testing().test(.POST, "/admin/schedule/rooms", headers: desk.headers.merging(formHeaders),
                                             body: form([("location", north.id!.uuidString), ("name", "B")])) { status = $0.status }
                #expect(status == .forbidden)
            }
        }

        // MARK: Public booking

        func publicForm(_ start: String, _ overrides: [(String, String)] = []) -> ByteBuffer {
            var fields: [String: String] = ["service": "consultation", "start": start, "name": "Priya Shah", "email": "priya@example.test",
                                            "phone": "+44 7700 900555", "pregnant": "no", "isotretinoin": "never", "skinCancer": "no",
                                            "infection": "no", "consentToContact": "on"]
            for (k, v) in overrides { fields[k] = v }
            return form(fields.sorted { $0.key < $1.key })
        }

        func post(_ app: Application, _ path: String, _ body: ByteBuffer) async throws -> (HTTPStatus, String) {
            var result: (HTTPStatus, String) = (.ok, "")
            try await app.testing().test(.POST, path, headers: formHeaders, body: body) { res in result = (res.status, res.body.string) }
            return result
        }

        @Test func aPatientBooksOnlineAndTheTimeIsHeldUntilConfirmed() async throws {
            try await withDermis { app, settings in
                let location = try await Location.query(on: app.db).first()!
                var page = ""
                try await app.testing().test(.GET, "/book?service=consultation&date=\(monday)") { res in
                    #expect(res.status == .ok)
                    page = res.body.string
                }
                #expect(page.contains("value=\"2026-11-30T09:00:00Z\""), "free times without an account")
                let (status, held) = try await post(app, "/book", publicForm("2026-11-30T09:00:00Z", [("location", location.id!.uuidString)]))
                #expect(status == .created && held.contains("Your time is held"), "\(held)")
                let appointment = try #require(try await Appointment.query(on: app.db).first())
                #expect(appointment.status == "pending" && appointment.source == "public" && appointment.contactName == "Priya Shah")
                let message = try #require(try await OutboxMessage.query(on: app.db).first())
                #expect(message.recipient == "priya@example.test")
                let link = try #require(message.body.split(separator: "\n").first { $0.contains("/book/confirm/") })
                let path = String(link[link.range(of: "/book/confirm/")!.lowerBound...])
                #expect(!(appointment.confirmTokenHash ?? "").isEmpty && !message.body.contains(appointment.confirmTokenHash!), "only the hash is stored")
                // The front desk sees the pending booking on the calendar.
                let desk = try await desk(app, settings)
                var calendar = ""
                try await app.testing().test(.GET, "/calendar?date=\(monday)", headers: desk.headers) { calendar = $0.body.string }
                #expect(calendar.contains("Priya Shah") && calendar.contains("status-pending"))
                // The same time is no longer offered; confirming books it; its .ics is there.
                #expect(try await post(app, "/book", publicForm("2026-11-30T09:00:00Z", [("location", location.id!.uuidString), ("name", "Second Person")])).0 == .conflict)
                #expect(try await post(app, path, ByteBuffer()).0 == .ok)
                #expect(try await Appointment.find(appointment.id, on: app.db)?.status == "booked")
                var ics = ""
                try await app.testing().test(.GET, path + "/calendar.ics") { ics = $0.body.string }
                #expect(ics.contains("DTSTART;TZID=Europe/London:20261130T090000") && ics.contains("SUMMARY:Consultation at Harbour Skin Clinic"))
            }
        }

        @Test func aConfirmationLinkUsesThePublicAddressNotAForgedHost() async throws {
            try await withDermis(change: { $0.publicURL = "https://harbour.example" }) { app, settings in
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                var headers = formHeaders
                headers.replaceOrAdd(name: .host, value: "evil.example")
                headers.replaceOrAdd(name: .origin, value: "http://evil.example")
                var status: HTTPStatus = .ok
                try await app.testing().test(.POST, "/book", headers: headers, body: publicForm("2026-11-30T10:00:00Z", [("location", location)])) { status = $0.status }
                #expect(status == .created)
                let message = try #require(try await OutboxMessage.query(on: app.db).first())
                #expect(message.body.contains("https://harbour.example/book/confirm/") && !message.body.contains("evil.example"))
            }
        }

        @Test func anUnconfirmedHoldLapsesAndFreesItsTime() async throws {
            try await withDermis { app, settings in
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                #expect(try await post(app, "/book", publicForm("2026-11-30T10:00:00Z", [("location", location)])).0 == .created)
                let message = try #require(try await OutboxMessage.query(on: app.db).first())
                let link = try #require(message.body.split(separator: "\n").first { $0.contains("/book/confirm/") })
                let path = String(link[link.range(of: "/book/confirm/")!.lowerBound...])
                settings.manualClock.advance(by: Double(SchedulingService.holdMinutes * 60 - 1))
                #expect(try await post(app, "/book", publicForm("2026-11-30T10:00:00Z", [("location", location), ("email", "b@example.test")])).0 == .conflict,
                        "still held a second before the hold ends")
                settings.manualClock.advance(by: 1)
                #expect(try await post(app, "/book", publicForm("2026-11-30T10:00:00Z", [("location", location), ("email", "b@example.test")])).0 == .created,
                        "free again when the hold ends")
                #expect(try await post(app, path, ByteBuffer()).0 == .gone)
                #expect(try await Self.overlaps(app.db) == 0)
            }
        }

        @Test func thePreScreenDefersKindlyWithTheDateAndBooksNothing() async throws {
            try await withDermis { app, settings in
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                let (status, page) = try await post(app, "/book", publicForm("2026-11-30T11:00:00Z", [
                    ("location", location), ("isotretinoin", "stopped"), ("isotretinoinLastDose", "2026-09-15")]))
                #expect(status == .ok && page.contains("not safe for you just now") && page.contains("2027-03-15"))
                #expect(page.contains("+44 20 7946 0000"), "the clinic can still be contacted")
                let (pregnant, pregnantPage) = try await post(app, "/book", publicForm("2026-11-30T11:00:00Z", [("location", location), ("pregnant", "yes")]))
                #expect(pregnant == .ok && pregnantPage.contains("Pregnant") && !pregnantPage.contains("id=\"deferred-until\""))
                #expect(try await Appointment.query(on: app.db).count() == 0)
            }
        }

        @Test func aBadPublicFormNamesEachFieldAndIsRateLimited() async throws {
            try await withDermis { app, settings in
                let location = try await Location.query(on: app.db).first()!.id!.uuidString
                let (status, page) = try await post(app, "/book", publicForm("tomorrow", [("location", location), ("email", "not-an-email"),
                                                                                        ("pregnant", "maybe"), ("consentToContact", ""), ("name", " ")]))
                #expect(status == .unprocessableEntity)
                for field in ["name", "email", "consentToContact", "start", "pregnant"] { #expect(page.contains("data-field=\"\(field)\""), "\(field)") }
                #expect(page.contains("value=\"not-an-email\""), "what was typed stays")
                #expect(try await Appointment.query(on: app.db).count() == 0)
                for _ in 1..<PublicBookingController.bookingsPerAddressPerHour {
                    _ = try await post(app, "/book", publicForm("tomorrow", [("location", location)]))
                }
                #expect(try await post(app, "/book", publicForm("2026-11-30T12:00:00Z", [("location", location)])).0 == .tooManyRequests)
            }
        }

        @Test func statusesFollowTheVisitAndAStaleVersionIsRefused() async throws {
            try await withDermis { app, settings in
                let desk = try await desk(app, settings)
                let (_, booked, _) = try await desk.book("2026-11-30T14:00:00Z", practitioner: desk.ines)
                let id = booked["id"] as! String
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(id)", ["status": "completed"], ifMatch: 1).0 == .conflict, "not checked in yet")
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(id)", ["status": "checked-in"], ifMatch: 1).0 == .ok)
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(id)", ["status": "cancelled"], ifMatch: 1).0 == .conflict, "stale")
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(id)", ["status": "nonsense"], ifMatch: 2).0 == .unprocessableEntity)
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(id)", ["status": "completed"], ifMatch: 2).0 == .ok)
                // A cancelled booking frees its time.
                let (_, other, _) = try await desk.book("2026-11-30T15:00:00Z", practitioner: desk.ines)
                #expect(try await desk.call(.PATCH, "/api/v1/appointments/\(other["id"] as! String)", ["status": "cancelled"], ifMatch: 1).0 == .ok)
                #expect(try await desk.book("2026-11-30T15:00:00Z", practitioner: desk.ines).0 == .created)
            }
        }
    }
}

