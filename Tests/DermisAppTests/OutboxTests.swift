import DermisCore
import Fluent
import Foundation
import NIOConcurrencyHelpers
import Testing
import VaporTesting
@testable import DermisApp

/// A transport that records what it is asked to send and answers as told.
final class FakeTransport: MailTransport {
    private let state = NIOLockedValueBox<(sent: [MailMessage], answers: [MailError?])>(([], []))

    /// Answers for the next sends, in order (nil: accepted); when they run out, everything is accepted.
    func answer(_ answers: [MailError?]) { state.withLockedValue { $0.answers = answers } }
    var sent: [MailMessage] { state.withLockedValue { $0.sent } }

    func send(_ mail: MailMessage) async throws {
        let answer: MailError? = state.withLockedValue { state in
            state.sent.append(mail)
            return state.answers.isEmpty ? nil : state.answers.removeFirst()
        }
        if let answer { throw answer }
    }
}

extension AppTests {
    /// The outbox worker: what is due is sent once, failures are retried with backoff, then dead with the answer.
    @Suite struct Outbox {
        func queue(_ app: Application, _ settings: DermisSettings, count: Int = 1, to recipient: String = "noor@example.test") async throws -> [UUID] {
            let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
            var ids: [UUID] = []
            for n in 0..<count {
                let message = OutboxMessage(clinicID: clinic, recipient: recipient, subject: "Ünïcode subject \(n)", body: "Hello\nhttps://clinic.example/x",
                                            kind: "test", at: settings.clock.now())
                try await message.create(on: app.db)
                ids.append(try message.requireID())
            }
            return ids
        }

        func status(_ app: Application, _ id: UUID) async throws -> OutboxMessage {
            try #require(try await OutboxMessage.find(id, on: app.db))
        }

        @Test func aDueMessageIsSentOnceWithAStableMessageID() async throws {
            try await withDermis { app, settings in
                let transport = FakeTransport()
                let worker = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                let id = try #require(try await queue(app, settings).first)
                #expect(try await worker.runOnce() == 1)
                #expect(try await worker.runOnce() == 0, "sent messages are not sent again")
                let sent = try #require(transport.sent.first)
                #expect(transport.sent.count == 1 && sent.messageID == OutboxWorker.messageID(id) && sent.to == "noor@example.test")
                let stored = try await status(app, id)
                #expect(stored.status == "sent" && stored.sentAt == settings.clock.now() && stored.attempts == 1)
            }
        }

        @Test func failuresAreRetriedWithBackoffThenDeadWithTheServersAnswer() async throws {
            try await withDermis { app, settings in
                let transport = FakeTransport()
                let worker = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                let id = try #require(try await queue(app, settings).first)
                transport.answer(Array(repeating: MailError(permanent: false, message: "451 try later"), count: OutboxWorker.maxAttempts))
                for attempt in 1...OutboxWorker.maxAttempts {
                    #expect(try await worker.runOnce() == 1)
                    let stored = try await status(app, id)
                    #expect(stored.attempts == attempt && stored.lastError == "451 try later")
                    if attempt < OutboxWorker.maxAttempts {
                        #expect(stored.status == "retry")
                        // Not a second before its backoff ends; then it is due.
                        let wait = OutboxWorker.backoff(afterAttempt: attempt)
                        settings.manualClock.advance(by: wait - 1)
                        #expect(try await worker.runOnce() == 0)
                        settings.manualClock.advance(by: 1)
                    } else {
                        #expect(stored.status == "dead")
                    }
                }
                #expect(OutboxWorker.backoff(afterAttempt: 1) == 60 && OutboxWorker.backoff(afterAttempt: 3) == 240)
                settings.manualClock.advance(by: 7200)
                #expect(try await worker.runOnce() == 0, "a dead message waits for an admin")
            }
        }

        @Test func aPermanentRefusalIsDeadAtOnce() async throws {
            try await withDermis { app, settings in
                let transport = FakeTransport()
                let worker = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                let id = try #require(try await queue(app, settings).first)
                transport.answer([MailError(permanent: true, message: "550 no such user")])
                try await worker.runOnce()
                let stored = try await status(app, id)
                #expect(stored.status == "dead" && stored.lastError == "550 no such user" && stored.attempts == 1)
            }
        }

        @Test func aWorkerThatDiedMidSendIsTakenOverAfterItsLeaseWithTheSameMessageID() async throws {
            try await withDermis { app, settings in
                let id = try #require(try await queue(app, settings).first)
                // A worker claimed it and died before marking it: it stays `sending` under its claim.
                try await OutboxMessage.query(on: app.db).filter(\.$id == id).set(\.$status, to: "sending")
                    .set(\.$claimedUntil, to: settings.clock.now().addingTimeInterval(OutboxWorker.lease)).set(\.$attempts, to: 1).update()
                let transport = FakeTransport()
                let worker = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                #expect(try await worker.runOnce() == 0, "not while the claim stands")
                settings.manualClock.advance(by: OutboxWorker.lease)
                #expect(try await worker.runOnce() == 1)
                #expect(transport.sent.first?.messageID == OutboxWorker.messageID(id))
                #expect(try await status(app, id).status == "sent")
            }
        }

        @Test func twoWorkersAtOnceSendEachMessageExactlyOnce() async throws {
            try await withDermis { app, settings in
                let ids = try await queue(app, settings, count: 40)
                let transport = FakeTransport()
                let one = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                let two = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
                async let a = one.runOnce(limit: 40)
                async let b = two.runOnce(limit: 40)
                let tried = try await a + b
                #expect(tried == 40)
                #expect(Set(transport.sent.map(\.messageID)).count == 40 && transport.sent.count == 40)
                for id in ids { #expect(try await status(app, id).status == "sent") }
            }
        }

        @Test func withoutATransportMessagesWaitAndThePageSaysWhy() async throws {
            try await withDermis { app, settings in
                _ = try await queue(app, settings)
                #expect(app.mail.worker == nil)
                let admin = try await signIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                try await app.testing().test(.GET, "/admin/outbox", headers: admin) { res in
                    #expect(res.status == .ok)
                    #expect(res.body.string.contains("id=\"outbox-problem\"") && res.body.string.contains("DERMIS_SMTP_URL"))
                    #expect(res.body.string.contains("noor@example.test"))
                }
            }
        }

        @Test func aBadSMTPSettingIsRefusedAtStartNamingIt() {
            #expect(throws: InvalidInput.self) { try SMTPSettings.parse(url: "http://mail.example", from: "a@b.example", caFile: nil) }
            #expect(throws: InvalidInput.self) { try SMTPSettings.parse(url: "smtp://mail.example?starttls=maybe", from: "a@b.example", caFile: nil) }
            #expect(throws: InvalidInput.self) { try SMTPSettings.parse(url: "smtp://mail.example", from: nil, caFile: nil) }
            let parsed = try? SMTPSettings.parse(url: "smtps://u%40x:p%2Fw@mail.example", from: "Clinic <c@x.example>", caFile: nil)
            #expect(parsed?.port == 465 && parsed?.security == .implicitTLS && parsed?.username == "u@x" && parsed?.password == "p/w")
            #expect((try? SMTPSettings.parse(url: "smtp://mail.example?starttls=off", from: "c@x.example", caFile: nil))?.security == SMTPSettings.Security.none)
        }

        @Test func theMIMEIsValidAndHeadersCannotBeInjected() {
            let mail = MailMessage(from: "Clinic <c@x.example>", to: "noor@example.test", subject: "Zoë's booking\r\nBcc: evil@example.test",
                                   text: "Line\n.starts with a dot", html: "<p>x</p>", calendar: "BEGIN:VCALENDAR\r\nEND:VCALENDAR",
                                   messageID: "<id@dermis>", date: Date(timeIntervalSince1970: 0), unsubscribe: "mailto:stop@x.example")
            let text = mail.rendered(boundarySeed: "b")
            #expect(!text.contains("\nBcc:"), "a line break in the subject cannot add a header")
            #expect(text.contains("Subject: =?UTF-8?B?"))
            #expect(text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"))
            #expect(text.contains("multipart/mixed") && text.contains("multipart/alternative") && text.contains("filename=\"invite.ics\""))
            #expect(text.contains("List-Unsubscribe: <mailto:stop@x.example>"))
            #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "every line ends in CRLF")
            #expect(text.split(separator: "\r\n").allSatisfy { $0.count <= 998 })
            #expect(MailMessage.mailbox("Clinique Zoë <c@x.example>") == "=?UTF-8?B?\(Data("Clinique Zoë".utf8).base64EncodedString())?= <c@x.example>")
            #expect(MailMessage.mailbox("Harbour Skin <c@x.example>") == "\"Harbour Skin\" <c@x.example>")
            #expect(MailMessage.mailbox("c@x.example") == "c@x.example")
            #expect(!MailMessage.isDeliverable("a b@example.test") && !MailMessage.isDeliverable("x>@y.example") && MailMessage.isDeliverable("a@b.example"))
        }
    }
}

extension AppTests.Scheduling {
    /// What the patient is told: a staff booking is confirmed with its invitation, a move and a cancellation are
    /// written, reminders go 48 and 2 hours before — each once, and none that was already past at booking.
    @Test func patientsAreToldOfBookingsMovesCancellationsAndRemindedBefore() async throws {
        try await withDermis { app, settings in
            let desk = try await desk(app, settings)
            let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
            let details = try PatientDetails(givenName: "Noor", familyName: "Haddad", dateOfBirth: "1990-02-02", email: "noor@example.test")
                .validated(today: CalendarDate(iso: "2026-11-27")!)
            let patient = try await PatientRegistry(db: app.db, clinicID: clinic).create(details, by: desk.ines, at: settings.clock.now())
            // Thursday 3 December 2026, well over 48 hours ahead.
            let slots = try await desk.slots(on: "2026-12-03", patient: try patient.requireID())
            let start = try #require(slots.first?["start"] as? String)
            let (status, booked, text) = try await desk.book(start, patient: try patient.requireID())
            #expect(status == .created, "\(text)")
            let id = try #require(UUID(uuidString: booked["id"] as? String ?? ""))
            func messages(_ kind: String) async throws -> [OutboxMessage] {
                try await OutboxMessage.query(on: app.db).filter(\.$subjectID == id).filter(\.$kind == kind).all()
            }
            let confirmed = try #require(try await messages("booking-confirmed").first)
            #expect(confirmed.recipient == "noor@example.test" && confirmed.calendar?.contains("BEGIN:VEVENT") == true)
            #expect(!confirmed.body.contains("Fitzpatrick") && confirmed.body.contains("Harbourside"))

            // Reminders: none until 48 hours before; at that second one, written once however many passes run.
            let appointment = try #require(try await Appointment.find(id, on: app.db))
            let untilReminder = appointment.startsAt.addingTimeInterval(-48 * 3600).timeIntervalSince(settings.clock.now())
            settings.manualClock.advance(by: untilReminder - 1)
            #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 0)
            settings.manualClock.advance(by: 1)
            #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 1)
            #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 0)
            #expect(try await messages("reminder-48h").count == 1)
            settings.manualClock.advance(by: 46 * 3600)
            #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 1)
            #expect(try await messages("reminder-2h").count == 1)

            // A cancellation is written with the cancelled invitation.
            let staff = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
            let client = TestClient(app: app, headers: staff)
            let cancel = try await client.send(.PATCH, "/api/v1/appointments/\(id)", ["status": "cancelled"], ifMatch: appointment.version)
            #expect(cancel.status == .ok, "\(cancel.text)")
            let cancelled = try #require(try await messages("booking-cancelled").first)
            #expect(cancelled.calendar?.contains("STATUS:CANCELLED") == true)
        }
    }

    @Test func aBookingMadeInsideTheReminderWindowGetsNoLateReminder() async throws {
        try await withDermis { app, settings in
            let desk = try await desk(app, settings)
            let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
            let details = try PatientDetails(givenName: "Ada", familyName: "Quint", dateOfBirth: "1985-01-01", email: "ada@example.test")
                .validated(today: CalendarDate(iso: "2026-11-27")!)
            let patient = try await PatientRegistry(db: app.db, clinicID: clinic).create(details, by: desk.ines, at: settings.clock.now())
            // Saturday 28 November: within 48 hours of now (Friday 27th, 10:00 UTC).
            let start = try #require(try await desk.slots(on: "2026-11-28", patient: try patient.requireID()).first?["start"] as? String)
            let (_, booked, _) = try await desk.book(start, patient: try patient.requireID())
            let id = try #require(UUID(uuidString: booked["id"] as? String ?? ""))
            #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 0)
            #expect(try await OutboxMessage.query(on: app.db).filter(\.$subjectID == id).filter(\.$kind == "reminder-48h").count() == 0)
        }
    }
}

extension AppTests.FollowUp {
    @Test func signingMailsThePatientTheirAftercareLinkWhenTheRecordHasAnAddress() async throws {
        try await withDermis { app, settings in
            try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").set(\.$email, to: "zoe@example.test").update()
            let signed = try await signedSession(app, settings)
            let message = try #require(try await OutboxMessage.query(on: app.db).filter(\.$kind == "aftercare-link").first())
            #expect(message.recipient == "zoe@example.test" && message.subjectID?.uuidString == signed.chartID.uppercased())
            let path = try #require(message.body.range(of: #"/care/[A-Za-z0-9_-]+"#, options: .regularExpression).map { String(message.body[$0]) })
            let (status, page) = try await get(app, path)
            #expect(status == .ok && page.contains("Zoë"), "the mailed link opens the patient's page")
            // Nothing clinical beyond the link: no depths, no zones.
            // (The link's random token may hold any letters: only the words around it are read.)
            let words = message.body.replacing(/https?:\/\/\S+/, with: "")
            #expect(!words.contains("mm") && !words.contains("cheeks"))
        }
    }
}

extension AppTests.FollowUp {
    @Test func anAdverseEventFromACheckInAlertsTheTreatingPractitionerByEMailWithoutPatientDetails() async throws {
        try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
            let signed = try await signedSession(app, settings)
            let path = try await link(signed)
            settings.manualClock.advance(by: 20 * 3600)
            let (status, _) = try await checkIn(app, path, [("redness", "2"), ("pain", "4"), ("signs[]", "pus"), ("notes", "Yellow crust")])
            #expect(status == .created)
            let event = try #require(try await AdverseEvent.query(on: app.db).first())
            let alert = try #require(try await OutboxMessage.query(on: app.db).filter(\.$kind == "adverse-event-alert").first())
            #expect(alert.recipient == signed.staff.user.email && alert.subjectID == event.id)
            #expect(alert.body.contains("https://clinic.example/adverse-events/\(try event.requireID().uuidString)"))
            #expect(!alert.body.contains("Zoë") && !alert.body.contains("Lefèvre") && !alert.body.contains("crust"))
        }
    }
}

@Suite struct QuietHoursTests {
    let london = TimeZone(identifier: "Europe/London")!

    func at(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    @Test func aMessageThatCanWaitWaitsForTheMorningInTheLocationsZone() {
        // Winter: London is UTC.
        #expect(MessagingRules.standard.quiet.end(after: at("2026-12-01T20:59:59Z"), in: london) == nil)
        #expect(MessagingRules.standard.quiet.end(after: at("2026-12-01T21:00:00Z"), in: london) == at("2026-12-02T08:00:00Z"))
        #expect(MessagingRules.standard.quiet.end(after: at("2026-12-02T07:59:59Z"), in: london) == at("2026-12-02T08:00:00Z"))
        #expect(MessagingRules.standard.quiet.end(after: at("2026-12-02T08:00:00Z"), in: london) == nil)
        // Summer time: 21:00 in London is 20:00 UTC.
        #expect(MessagingRules.standard.quiet.end(after: at("2026-07-01T20:00:00Z"), in: london) == at("2026-07-02T07:00:00Z"))
        #expect(AppointmentNotices.Kind.reminder(hours: 48).keepsQuietHours && AppointmentNotices.Kind.reminder(hours: 12).keepsQuietHours)
        #expect(!AppointmentNotices.Kind.reminder(hours: 11).keepsQuietHours && !AppointmentNotices.Kind.moved.keepsQuietHours)
        // A clinic's own hours, over midnight or not.
        let late = QuietHours(startHour: 22, endHour: 7)
        #expect(late.end(after: at("2026-12-01T21:59:59Z"), in: london) == nil)
        #expect(late.end(after: at("2026-12-01T22:00:00Z"), in: london) == at("2026-12-02T07:00:00Z"))
        let lunch = QuietHours(startHour: 12, endHour: 14)
        #expect(lunch.end(after: at("2026-12-01T11:59:59Z"), in: london) == nil)
        #expect(lunch.end(after: at("2026-12-01T13:30:00Z"), in: london) == at("2026-12-01T14:00:00Z"))
        #expect(lunch.end(after: at("2026-12-01T14:00:00Z"), in: london) == nil)
    }
}

extension AppTests.Outbox {
    @Test func aPatientWhoStopsEMailGetsNoMoreAndEveryMessageCarriesTheLink() async throws {
        try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
            let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
            let id = try zoe.requireID()
            let clinic = zoe.$clinic.id
            func message() async throws -> UUID {
                let m = OutboxMessage(clinicID: clinic, recipient: "zoe@example.test", subject: "Reminder", body: "Hello", kind: "reminder-48h",
                                      at: settings.clock.now())
                m.patientID = id
                try await m.create(on: app.db)
                return try m.requireID()
            }
            let transport = FakeTransport()
            let worker = OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example")
            _ = try await message()
            try await worker.runOnce()
            let link = try #require(transport.sent.first?.unsubscribe)
            #expect(link.hasPrefix("https://clinic.example/unsubscribe/\(id.uuidString.lowercased())/"))
            let path = String(link.dropFirst("https://clinic.example".count))
            // A link for someone else, or a changed MAC, is not honoured.
            try await app.testing().test(.GET, "/unsubscribe/\(UUID())/\(path.split(separator: "/").last!)") { #expect($0.status == .notFound) }
            try await app.testing().test(.POST, path + "x") { #expect($0.status == .notFound) }
            try await app.testing().test(.GET, path) { res in
                #expect(res.status == .ok && res.body.string.contains("id=\"stop-email\""))
            }
            #expect(try await MessageOptOut.find(id, on: app.db) == nil, "opening the page stops nothing")
            // The mail program's one-click POST: no Origin, no session.
            try await app.testing().test(.POST, path, headers: ["Content-Type": "application/x-www-form-urlencoded"],
                                         body: ByteBuffer(string: "List-Unsubscribe=One-Click")) { #expect($0.status == .ok) }
            #expect(try await MessageOptOut.find(id, on: app.db)?.how == "one-click")
            #expect(try await AuditEvent.query(on: app.db).filter(\.$objectType == "MessageOptOut").filter(\.$patientID == id).count() == 1)
            // The next message to her is not sent, and says why.
            let next = try await message()
            try await worker.runOnce()
            #expect(transport.sent.count == 1)
            let stored = try #require(try await OutboxMessage.find(next, on: app.db))
            #expect(stored.status == "dead" && stored.lastError?.contains("stopped e-mail") == true)
        }
    }
}
