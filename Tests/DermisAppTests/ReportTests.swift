import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// The reports against figures worked out by hand from a small clinic whose every session, score, event and
    /// booking is known; the facts a signature and an amendment write; the demo's history, the same for the same seed.
    @Suite struct Reports {
        /// Writes what the reports read for one clinic: signed sessions' facts, scores, adverse events, bookings.
        struct Fixture {
            let app: Application
            let clinicID: UUID
            let location: Location
            let room: Room
            let physician: StaffUser
            let treatment: Service
            let zone = TimeZone(identifier: "Europe/London")!

            init(_ app: Application) async throws {
                self.app = app
                clinicID = try await Clinic.query(on: app.db).first()!.requireID()
                location = try await Location.query(on: app.db).first()!
                room = try await Room.query(on: app.db).filter(\.$name == "Room 1").first()!
                physician = try await StaffUser.query(on: app.db).filter(\.$email == "ines.doctor@demo.dermis.test").first()!
                treatment = try await Service.query(on: app.db).filter(\.$code == "treatment").first()!
            }

            func patient(_ n: Int) async throws -> UUID {
                let details = try PatientDetails(givenName: "Report", familyName: "Patient \(n)", dateOfBirth: "1980-01-0\(n)")
                    .validated(today: CalendarDate(iso: "2026-11-27")!)
                return try await PatientRegistry(db: app.db, clinicID: clinicID).create(details, by: physician.id!, at: testNow).requireID()
            }

            /// A signed session's facts: one cheeks zone treated for acne scars at `depth`.
            @discardableResult
            func session(_ patient: UUID, number: Int, planned: Int, day: String, depth: Double) async throws -> UUID {
                let fact = SessionFact()
                fact.id = UUID()
                fact.chartID = UUID()
                fact.clinicID = clinicID
                fact.patientID = patient
                fact.practitionerID = physician.id!
                fact.locationID = location.id
                fact.day = day
                fact.deepestMm = depth
                fact.seriesNumber = number
                fact.plannedSessions = planned
                try await fact.create(on: app.db)
                let zone = SessionZoneFact()
                zone.id = UUID()
                zone.chartID = fact.chartID
                zone.clinicID = clinicID
                zone.patientID = patient
                zone.zone = "cheeks"
                zone.indication = "acne-scars"
                zone.depthMm = depth
                zone.day = day
                zone.locationID = location.id
                zone.practitionerID = physician.id!
                try await zone.create(on: app.db)
                return fact.chartID
            }

            func score(_ chart: UUID, _ patient: UUID, _ scale: String, _ rater: String, _ value: Int) async throws {
                let score = OutcomeScore()
                score.$patient.id = patient
                score.chartID = chart
                score.scale = scale
                score.rater = rater
                score.value = value
                score.recordedAt = testNow
                try await score.create(on: app.db)
            }

            func event(_ chart: UUID, _ patient: UUID, byCheckIn: Bool, opened: Date, actedAfterHours: Double?, resolved: Bool) async throws {
                let event = AdverseEvent()
                event.$clinic.id = clinicID
                event.$patient.id = patient
                event.chartID = chart
                event.type = "prolonged-erythema"
                event.severity = "moderate"
                event.onset = CalendarDate(opened, in: zone).description
                event.details = ""
                event.actions = ""
                event.outcome = resolved ? "recovered" : "ongoing"
                event.resolvedOn = resolved ? "2026-09-10" : nil
                event.openedByKind = byCheckIn ? "check-in-rule" : "practitioner"
                event.openedAt = opened
                event.version = 1
                event.updatedAt = opened
                event.firstActionAt = actedAfterHours.map { opened.addingTimeInterval($0 * 3600) }
                try await event.create(on: app.db)
            }

            func booking(_ patient: UUID, _ day: String, _ time: String, minutes: Int, status: AppointmentStatus, cancelledHoursBefore: Double? = nil) async throws {
                let start = Availability.instant(CalendarDate(iso: day)!, ClockTime(time)!, in: zone)
                let a = Appointment()
                a.$clinic.id = clinicID
                a.$location.id = try location.requireID()
                a.$patient.id = patient
                a.contactName = ""
                a.contactEmail = ""
                a.contactPhone = ""
                a.$service.id = try treatment.requireID()
                a.zones = "cheeks"
                a.practitionerID = physician.id!
                a.roomID = try room.requireID()
                a.startsAt = start
                a.endsAt = start.addingTimeInterval(Double(minutes) * 60)
                a.holdsUntil = a.endsAt
                a.status = status.rawValue
                a.source = "staff"
                a.notes = ""
                a.version = 1
                a.createdAt = start.addingTimeInterval(-10 * 86_400)
                a.updatedAt = cancelledHoursBefore.map { start.addingTimeInterval(-$0 * 3600) } ?? a.createdAt
                try await a.create(on: app.db)
            }
        }

        /// Seven series: five completed acne-scar series at 2.0 mm scored first and last on Goodman & Baron, one
        /// stopped at two of three (1.0 mm), one completed but scored only at its last session.
        func clinic(_ app: Application) async throws -> Fixture {
            let f = try await Fixture(app)
            let goodmanBaron = [(4, 2), (4, 3), (3, 2), (4, 1), (3, 3)]
            let gais = [2, 2, 3, 1, 4]
            let opened = Availability.instant(CalendarDate(iso: "2026-09-03")!, ClockTime("19:00")!, in: f.zone)
            for (i, (first, last)) in goodmanBaron.enumerated() {
                let patient = try await f.patient(i + 1)
                let charts = [
                    try await f.session(patient, number: 1, planned: 3, day: "2026-09-0\(i + 1)", depth: 2.0),
                    try await f.session(patient, number: 2, planned: 3, day: "2026-10-0\(i + 1)", depth: 2.0),
                    try await f.session(patient, number: 3, planned: 3, day: "2026-11-0\(i + 1)", depth: 2.0),
                ]
                try await f.score(charts[0], patient, "goodman-baron", "practitioner", first)
                if i == 0 { try await f.score(charts[1], patient, "goodman-baron", "practitioner", 3) }
                try await f.score(charts[2], patient, "goodman-baron", "practitioner", last)
                try await f.score(charts[2], patient, "gais", "practitioner", gais[i])
                if i == 0 { try await f.event(charts[0], patient, byCheckIn: true, opened: opened, actedAfterHours: 5, resolved: true) }
                if i == 1 { try await f.event(charts[2], patient, byCheckIn: true, opened: opened.addingTimeInterval(86_400), actedAfterHours: nil, resolved: false) }
            }
            let stopped = try await f.patient(6)
            let first = try await f.session(stopped, number: 1, planned: 3, day: "2026-09-15", depth: 1.0)
            let second = try await f.session(stopped, number: 2, planned: 3, day: "2026-10-15", depth: 1.0)
            try await f.score(first, stopped, "goodman-baron", "practitioner", 4)
            try await f.score(second, stopped, "goodman-baron", "practitioner", 2)
            try await f.event(second, stopped, byCheckIn: false, opened: opened.addingTimeInterval(2 * 86_400), actedAfterHours: 0, resolved: false)
            try await f.booking(stopped, "2026-12-02", "10:00", minutes: 60, status: .booked)
            let unpaired = try await f.patient(7)
            for n in 1...3 {
                let chart = try await f.session(unpaired, number: n, planned: 3, day: "2026-09-2\(n)", depth: 2.0)
                if n == 3 {
                    try await f.score(chart, unpaired, "goodman-baron", "practitioner", 2)
                    try await f.score(chart, unpaired, "gais", "practitioner", 5)
                }
            }
            for patient in try await SessionFact.query(on: app.db).all().map(\.patientID) {
                try await ReportFacts.refreshSeries(of: patient, on: app.db)
            }
            // The week of Monday 23 November: two attended and a no-show (120 minutes booked), a cancellation two hours
            // before (late) and one three days before; one still ahead on Friday afternoon (testNow is Friday 10:00 UTC).
            let p = try await f.patient(8)
            try await f.booking(p, "2026-11-23", "10:00", minutes: 60, status: .completed)
            try await f.booking(p, "2026-11-23", "11:00", minutes: 30, status: .completed)
            try await f.booking(p, "2026-11-24", "10:00", minutes: 30, status: .noShow)
            try await f.booking(p, "2026-11-25", "10:00", minutes: 30, status: .cancelled, cancelledHoursBefore: 2)
            try await f.booking(p, "2026-11-26", "10:00", minutes: 30, status: .cancelled, cancelledHoursBefore: 72)
            try await f.booking(p, "2026-11-27", "14:00", minutes: 30, status: .booked)
            return f
        }

        @Test func figuresMatchTheHandComputedOnes() async throws {
            try await withDermis { app, settings in
                let f = try await clinic(app)
                let headers = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let client = TestClient(app: app, headers: headers)

                // Outcomes: changes −2, −1, −1, −3, 0 → median −1, IQR −2 to −1 (type 7); the stopped and the unpaired
                // series are left out. GAIS last ratings 2, 2, 3, 1, 4 and the unpaired series' 5 → median 2.5, IQR 2–3.75.
                let outcomes = try await client.send(.GET, "/api/v1/reports/outcomes?from=2026-08-01&to=2026-11-27")
                #expect(outcomes.status == .ok, "\(outcomes.text)")
                let groups = outcomes.object["groups"] as? [[String: Any]] ?? []
                let change = try #require(groups.first { $0["scale"] as? String == "goodman-baron" })
                #expect(change["n"] as? Int == 5 && change["median"] as? Double == -1 && change["q1"] as? Double == -2 && change["q3"] as? Double == -1)
                #expect(change["measure"] as? String == "change" && change["band"] as? Int == 2 && change["indication"] as? String == "acne-scars")
                #expect(change["smallGroup"] as? Bool == true)
                let gais = try #require(groups.first { $0["scale"] as? String == "gais" && $0["rater"] as? String == "practitioner" })
                #expect(gais["n"] as? Int == 6 && gais["median"] as? Double == 2.5 && gais["q1"] as? Double == 2 && gais["q3"] as? Double == 3.75)
                #expect(gais["measure"] as? String == "final")
                #expect(groups.count == 2, "no other group: \(groups.map { "\($0["scale"]!) \($0["band"]!)" })")

                // Safety: 18 sessions at 2.0 mm with two events (11.1 per 100), 2 at 1.0 mm with one (50.0); 3 in 20 = 15.0.
                let safety = try await client.send(.GET, "/api/v1/reports/safety?from=2026-08-01&to=2026-11-27").object
                #expect(safety["sessions"] as? Int == 20 && safety["events"] as? Int == 3 && safety["open"] as? Int == 2)
                #expect(safety["per100Sessions"] as? Double == 15.0)
                let tables = safety["tables"] as? [[String: Any]] ?? []
                let bands = (tables.first { $0["dimension"] as? String == "band" }?["rows"] as? [[String: Any]]) ?? []
                let deep = try #require(bands.first { $0["key"] as? String == "2" })
                let middle = try #require(bands.first { $0["key"] as? String == "1" })
                #expect(deep["sessions"] as? Int == 18 && deep["events"] as? Int == 2 && deep["per100Sessions"] as? Double == 11.1 && deep["open"] as? Int == 1)
                #expect(middle["sessions"] as? Int == 2 && middle["per100Sessions"] as? Double == 50.0 && middle["smallGroup"] as? Bool == true)
                // Open ones first: both groups have one open, the higher rate leads.
                #expect(bands.first?["key"] as? String == "1")
                let zones = (tables.first { $0["dimension"] as? String == "zone" }?["rows"] as? [[String: Any]]) ?? []
                #expect(zones.count == 1 && zones[0]["key"] as? String == "cheeks" && zones[0]["per100Sessions"] as? Double == 15.0)
                #expect((safety["openEvents"] as? [[String: Any]])?.count == 2)
                let flag = safety["flagToAction"] as? [String: Any] ?? [:]
                #expect(flag["flagged"] as? Int == 2 && flag["awaitingAction"] as? Int == 1 && flag["medianHours"] as? Double == 5)

                // Operations, the week of 23 November for the physician: Mon–Fri 09:00–17:30 less 30 minutes' lunch =
                // 5 × 480 = 2400 minutes; booked 60 + 30 + the no-show's 30 + Friday's 30 still ahead = 150 → 6.25 → 6.3 %.
                // Room 1 is open while either practitioner works: Monday 480, Tuesday to Friday 09:00–18:00 = 4 × 540,
                // Saturday the nurse's 450 → 3090 minutes, 150 booked → 4.85 → 4.9 %.
                let weekReply = try await client.send(.GET, "/api/v1/reports/operations?from=2026-11-23&to=2026-11-29")
                #expect(weekReply.status == .ok, "\(weekReply.text)")
                let week = weekReply.object
                let rows = week["utilisation"] as? [[String: Any]] ?? []
                let doctor = try #require(rows.first { $0["kind"] as? String == "practitioner" && $0["id"] as? String == f.physician.id!.uuidString }, "\(rows.map { "\($0["kind"]!) \($0["id"]!) \($0["label"]!)" }) \(f.physician.id!)")
                #expect(doctor["availableMinutes"] as? Int == 2400 && doctor["bookedMinutes"] as? Int == 150 && doctor["percent"] as? Double == 6.3)
                let room = try #require(rows.first { $0["kind"] as? String == "room" && $0["id"] as? String == f.room.id!.uuidString })
                #expect(room["availableMinutes"] as? Int == 3090 && room["bookedMinutes"] as? Int == 150 && room["percent"] as? Double == 4.9)
                #expect(week["weeks"] as? [String] == ["2026-11-23"])
                // Attendance: five due before now (2 attended, 1 no-show, 2 cancelled of which 1 late) → 20.0 % each.
                let attendance = week["attendance"] as? [String: Any] ?? [:]
                #expect(attendance["due"] as? Int == 5 && attendance["noShows"] as? Int == 1 && attendance["lateCancellations"] as? Int == 1)
                #expect(attendance["noShowPercent"] as? Double == 20.0 && attendance["lateCancellationPercent"] as? Double == 20.0)
                #expect(attendance["noticeHours"] as? Int == 24)

                // Series started since August: seven; six completed (85.7 %), one in progress with a treatment booked.
                let period = try await client.send(.GET, "/api/v1/reports/operations?from=2026-08-01&to=2026-11-27").object
                let series = period["series"] as? [String: Any] ?? [:]
                #expect(series["started"] as? Int == 7 && series["completed"] as? Int == 6 && series["bookedAhead"] as? Int == 1 && series["stopped"] as? Int == 0)
                #expect(series["completedPercent"] as? Double == 85.7)
                let steps = (series["steps"] as? [[String: Any]] ?? []).map { $0["reached"] as? Int ?? -1 }
                #expect(steps == [7, 7, 6])

                // The same figures as CSV.
                var csv = ""
                try await app.testing().test(.GET, "/api/v1/reports/attendance.csv?from=2026-11-23&to=2026-11-29", headers: headers) { res in
                    #expect(res.headers.contentType?.description.hasPrefix("text/csv") == true)
                    csv = res.body.string
                }
                // The clinic's notice period moves the line: at one hour, the cancellation two hours before is not late.
                var admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                admin.add(name: .contentType, value: "application/x-www-form-urlencoded")
                var refused = ""
                try await app.testing().test(.POST, "/admin/schedule/notice", headers: admin, body: form([("hours", "-3")])) { res in
                    #expect(res.status == .unprocessableEntity)
                    refused = res.body.string
                }
                #expect(refused.contains("must be whole hours from 0 to 336"))
                try await app.testing().test(.POST, "/admin/schedule/notice", headers: admin, body: form([("hours", "1")])) { res in
                    #expect(res.status == .seeOther || res.status == .found)
                }
                let stricter = try await client.send(.GET, "/api/v1/reports/operations?from=2026-11-23&to=2026-11-29").object["attendance"] as? [String: Any]
                #expect(stricter?["lateCancellations"] as? Int == 0 && stricter?["noticeHours"] as? Int == 1)
                #expect(csv == "due,unrecorded,attended,no_shows,cancelled,late_cancellations,no_show_percent,late_cancellation_percent,notice_hours\r\n5,0,2,1,2,1,20.00,20.00,24\r\n")
            }
        }

        @Test func filtersAreCheckedAndTheReportsAreClinical() async throws {
            try await withDermis { app, settings in
                let f = try await clinic(app)
                let practitioner = TestClient(app: app, headers: try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock))
                // A practitioner filter: only the physician's sessions; another clinic's or a made-up id is refused by name.
                let mine = try await practitioner.send(.GET, "/api/v1/reports/safety?from=2026-08-01&to=2026-11-27&practitioner=\(f.physician.id!)")
                #expect(mine.object["sessions"] as? Int == 20 && (mine.object["openEvents"] as? [Any])?.count == 2)
                let nurse = try await StaffUser.query(on: app.db).filter(\.$email == "sam.nurse@demo.dermis.test").first()!
                let theirs = try await practitioner.send(.GET, "/api/v1/reports/safety?from=2026-08-01&to=2026-11-27&practitioner=\(nurse.id!)")
                #expect(theirs.object["sessions"] as? Int == 0 && theirs.object["per100Sessions"] == nil)
                #expect((theirs.object["openEvents"] as? [Any])?.isEmpty == true, "only the open events of the nurse's sessions")
                for (query, field) in [("from=2026-02-30", "from"), ("to=yesterday", "to"), ("from=2026-11-27&to=2026-11-01", "from"),
                                       ("from=2020-01-01&to=2026-11-27", "to"), ("practitioner=\(UUID())", "practitioner"),
                                       ("location=nope", "location"), ("from=2026-01-01&from=2026-02-01", "from"), ("to=", "to"), ("to=%zz", "to")] {
                    let reply = try await practitioner.send(.GET, "/api/v1/reports/outcomes?\(query)")
                    #expect(reply.status == .unprocessableEntity, "\(query)")
                    #expect((reply.object["error"] as? [String: Any])?["field"] as? String == field, "\(query): \(reply.text)")
                }
                // The page's form sends empty fields for "all locations" and "all practitioners".
                #expect(try await practitioner.send(.GET, "/reports?from=2026-08-01&to=2026-11-27&location=&practitioner=").status == .ok)
                // The page names a bad filter and still shows the default report.
                let page = try await practitioner.send(.GET, "/reports?from=31-12-2026")
                #expect(page.status == .unprocessableEntity && page.text.contains("must be a date YYYY-MM-DD") && page.text.contains("id=\"outcomes\""))
                // Front desk: no reports, in any form.
                let desk = TestClient(app: app, headers: try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock))
                for path in ["/reports", "/api/v1/reports/outcomes", "/api/v1/reports/safety", "/api/v1/reports/operations", "/api/v1/reports/series.csv"] {
                    #expect(try await desk.send(.GET, path).status == .forbidden, "\(path)")
                }
                // The safety report names open events: their patients' records were read, one audit row each.
                let before = try await AuditEvent.query(on: app.db).filter(\.$objectType == "AdverseEvent").filter(\.$action == "read").count()
                _ = try await practitioner.send(.GET, "/api/v1/reports/safety?from=2026-08-01&to=2026-11-27")
                let after = try await AuditEvent.query(on: app.db).filter(\.$objectType == "AdverseEvent").filter(\.$action == "read").count()
                #expect(after - before == 2)
            }
        }

        @Test func signingAndAmendingWriteTheSessionsFacts() async throws {
            try await withDermis { app, settings in
                let signed = try await FollowUp().signedSession(app, settings, depth: 1.5)
                let chartID = try #require(UUID(uuidString: signed.chartID))
                let fact = try #require(try await SessionFact.query(on: app.db).filter(\.$chartID == chartID).first())
                #expect(fact.deepestMm == 1.5 && fact.seriesNumber == 1 && fact.practitionerID == signed.staff.id && fact.lotID != nil)
                #expect(fact.day == CalendarDate(signed.signedAt, in: TimeZone(identifier: "Europe/London")!).description)
                let zones = try await SessionZoneFact.query(on: app.db).filter(\.$chartID == chartID).all().map { "\($0.zone) \($0.depthMm)" }.sorted()
                #expect(zones == ["cheeks 1.5", "forehead 0.25"])
                // An amendment to 1.0 mm rewrites the facts: same chart, same place in the series, the new depths.
                let latest = try await TreatmentSession.query(on: app.db).filter(\.$chartID == chartID).sort(\.$version, .descending).first()!
                let body: [String: Any] = [
                    "reason": "Depth re-read from the pen's display", "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": false, "notes": "",
                    "identityConfirmed": true, "skinCleansed": true, "deviceID": latest.$device.id!.uuidString, "lotID": latest.$lot.id!.uuidString,
                    "zones": [["zone": "cheeks", "depthMm": 1.0, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20],
                              ["zone": "forehead", "depthMm": 0.25, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12]],
                ]
                let (status, _, text) = try await signed.course.call(.POST, "/sessions/\(chartID)/amendments", body, ifMatch: latest.version)
                #expect(status == .created, "\(text)")
                let facts = try await SessionFact.query(on: app.db).filter(\.$chartID == chartID).all()
                #expect(facts.count == 1 && facts[0].deepestMm == 1.0 && facts[0].seriesNumber == 1)
                #expect(try await SessionZoneFact.query(on: app.db).filter(\.$chartID == chartID).count() == 2)
                // The series row follows: one session done, its indications at their deepest, and a score once recorded.
                let patientID = signed.course.patientID
                let series = try #require(try await SeriesFact.query(on: app.db).filter(\.$patientID == patientID).first())
                #expect(series.done == 1 && series.firstDay == fact.day && series.lastPractitionerID == signed.staff.id)
                #expect(try await SeriesIndicationFact.query(on: app.db).filter(\.$patientID == patientID).all().map(\.deepestMm).max() == 1.0)
                let (scored, _, scoredText) = try await signed.course.call(.PUT, "/sessions/\(chartID)/outcomes", ["scores": ["goodman-baron.practitioner": 3]])
                #expect(scored == .noContent, "\(scoredText)")
                let score = try await SeriesScoreFact.query(on: app.db).filter(\.$patientID == patientID).filter(\.$scale == "goodman-baron").first()
                #expect(score?.scored == 1 && score?.firstValue == 3 && score?.lastValue == 3)
                // The report counts it in the band of 1.0 mm.
                let client = TestClient(app: app, headers: signed.course.session)
                let safety = try await client.send(.GET, "/api/v1/reports/safety").object
                let bands = ((safety["tables"] as? [[String: Any]])?.first?["rows"] as? [[String: Any]]) ?? []
                #expect(bands.map { "\($0["key"]!):\($0["sessions"]!)" } == ["1:1"])
            }
        }

        @Test func theDemoHistoryIsTheSameForTheSameSeedAndDay() async throws {
            func fingerprint(seed: UInt64) async throws -> [String] {
                var rows: [String] = []
                try await withDermis(seedDemo: false) { app, _ in
                    _ = try await DemoClinic.seedIfEmpty(app: app, history: true, seed: seed)
                    let patients = Dictionary(try await Patient.query(on: app.db).all().map { ($0.id!, $0.fullName) }, uniquingKeysWith: { a, _ in a })
                    for fact in try await SessionFact.query(on: app.db).all() {
                        rows.append("\(patients[fact.patientID] ?? "?") \(fact.seriesNumber) \(fact.day) \(fact.deepestMm)")
                    }
                    for score in try await OutcomeScore.query(on: app.db).all() {
                        rows.append("\(patients[score.$patient.id] ?? "?") \(score.scale) \(score.rater) \(score.value)")
                    }
                    let appointments = try await Appointment.query(on: app.db).all()
                    rows += appointments.map { "\($0.contactName) \($0.startsAt.timeIntervalSince1970) \($0.status)" }
                    // What the demo promises: finished and running series, every band, an event resolved, one pending
                    // online booking, photos on disk that the store serves back intact.
                    let facts = try await SessionFact.query(on: app.db).all()
                    #expect(Set(facts.map { Planning.downtimeBand(for: $0.deepestMm, protocol: app.dermis.clinicalProtocol).maxDepthMm }).count == 3)
                    #expect(Dictionary(grouping: facts, by: \.patientID).values.contains { $0.count >= $0[0].plannedSessions })
                    #expect(try await AdverseEvent.query(on: app.db).filter(\.$resolvedOn != nil).count() >= 1)
                    #expect(appointments.filter { $0.status == "pending" && $0.source == "public" }.count == 1)
                    #expect(appointments.contains { $0.status == "booked" && $0.startsAt > testNow })
                    let photo = try #require(try await Photo.query(on: app.db).first())
                    let store = PhotoStore(dataDirectory: app.dermis.settings.dataDirectory)
                    #expect(try store.read(photo.storedName, sha256: photo.sha256).count == photo.byteCount)
                    #expect(try await Patient.query(on: app.db).count() >= 30)
                }
                return rows.sorted()
            }
            let first = try await fingerprint(seed: 7)
            #expect(first.count > 100)
            #expect(try await fingerprint(seed: 7) == first)
            #expect(try await fingerprint(seed: 8) != first)
        }
    }
}

extension AppTests.Reports {
    /// The today board: a treatment today for a patient with no intake is blocked with the intake's link; the front
    /// desk sees the same readiness but not what needs clinical attention; everyone listed is audited as read.
    @Test func theTodayBoardShowsWhoIsBlockedAndTheLinkThatFixesIt() async throws {
        try await withDermis { app, settings in
            let f = try await Fixture(app)
            let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
            let now = settings.clock.now()
            let today = CalendarDate(now, in: f.zone)
            try await f.booking(zoe.requireID(), today.description, "15:00", minutes: 60, status: .booked)
            let practitioner = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
            let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
            let before = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Today").filter(\.$patientID == zoe.id).count()
            var clinical = "", frontDesk = ""
            try await app.testing().test(.GET, "/today", headers: practitioner) { res in
                #expect(res.status == .ok)
                clinical = res.body.string
            }
            try await app.testing().test(.GET, "/today", headers: desk) { res in
                #expect(res.status == .ok)
                frontDesk = res.body.string
            }
            for page in [clinical, frontDesk] {
                #expect(page.contains("Zoë Lefèvre") && page.contains("No screening yet"))
                #expect(page.contains("href=\"/patients/\(zoe.id!)/intake/new\""))
                #expect(page.contains("1 not ready"))
                #expect(page.contains("Numbing from 15:10"), "check-in minutes, then numbing")
            }
            #expect(clinical.contains("id=\"needs-attention\"") && !frontDesk.contains("id=\"needs-attention\""))
            #expect(clinical.contains("DEMO-LOT") == false || clinical.contains("Cartridge lots expiring"))
            let after = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Today").filter(\.$patientID == zoe.id).count()
            #expect(after - before == 2)
        }
    }
}

extension AppTests.Reports {
    /// Two clinics in one database: each clinic's reports and today board count and show only its own, and a filter
    /// naming the other clinic's location or practitioner is refused.
    @Test func eachClinicReportsOnlyItsOwn() async throws {
        try await withDermis { app, settings in
            let harbour = try await clinic(app)
            let hudson = try await AppTests.TwoClinics().hudson(app, settings)
            let hudsonLocation = try await Location.query(on: app.db).filter(\.$clinic.$id == hudson.clinic.requireID()).first()!
            let mine = TestClient(app: app, headers: try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock))
            let theirs = TestClient(app: app, headers: try await signIn(app, hudson.practitioner, clock: settings.clock))
            let period = "from=2026-08-01&to=2026-11-27"
            #expect(try await mine.send(.GET, "/api/v1/reports/safety?\(period)").object["sessions"] as? Int == 20)
            let other = try await theirs.send(.GET, "/api/v1/reports/safety?\(period)").object
            #expect(other["sessions"] as? Int == 0 && (other["openEvents"] as? [Any])?.isEmpty == true)
            let outcomes = try await theirs.send(.GET, "/api/v1/reports/outcomes?\(period)").object
            #expect((outcomes["groups"] as? [Any])?.isEmpty == true)
            let operations = try await theirs.send(.GET, "/api/v1/reports/operations?from=2026-11-23&to=2026-11-29").object
            #expect((operations["attendance"] as? [String: Any])?["due"] as? Int == 0)
            let rows = operations["utilisation"] as? [[String: Any]] ?? []
            #expect(!rows.contains { $0["id"] as? String == harbour.physician.id!.uuidString })
            for query in ["location=\(hudsonLocation.id!)", "practitioner=\(hudson.practitioner.id)"] {
                let refused = try await mine.send(.GET, "/api/v1/reports/safety?\(query)")
                #expect(refused.status == .unprocessableEntity, "\(query)")
            }
            // Harbour's booking today for one of its patients is not on Hudson's board.
            let today = CalendarDate(settings.clock.now(), in: harbour.zone)
            let zoe = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
            try await harbour.booking(zoe.requireID(), today.description, "16:00", minutes: 30, status: .booked)
            let board = try await theirs.send(.GET, "/today")
            #expect(board.status == .ok && !board.text.contains("Lefèvre"))
            #expect(try await mine.send(.GET, "/today").text.contains("Lefèvre"))
        }
    }
}
