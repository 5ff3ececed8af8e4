import Crypto
import DermisCore
import Fluent
import Foundation
import NIOConcurrencyHelpers
import Testing
import VaporTesting
@testable import DermisApp

/// An SMS provider that records what it is asked to send and answers as told.
final class FakeSMS: SMSTransport {
    private let state = NIOLockedValueBox<(sent: [(to: String, body: String)], answers: [MailError?])>(([], []))
    let token = "test-auth-token"

    func answer(_ answers: [MailError?]) { state.withLockedValue { $0.answers = answers } }
    var sent: [(to: String, body: String)] { state.withLockedValue { $0.sent } }

    func send(to phone: String, body: String) async throws {
        let answer: MailError? = state.withLockedValue { state in
            state.sent.append((phone, body))
            return state.answers.isEmpty ? nil : state.answers.removeFirst()
        }
        if let answer { throw answer }
    }

    func isGenuine(url: String, form: [String: String], headers: HTTPHeaders) -> Bool {
        TwilioMessages(settings: SMSSettings(url: "https://sms.example", from: "+15550100", user: "AC1", password: token), client: NoClient())
            .isGenuine(url: url, form: form, headers: headers)
    }
}

/// A client that is never called (the fake signs webhooks only).
struct NoClient: Client {
    var eventLoop: any EventLoop { fatalError("not used") }
    func send(_ request: ClientRequest) -> EventLoopFuture<ClientResponse> { fatalError("not used") }
    func delegating(to eventLoop: any EventLoop) -> any Client { self }
}

extension AppTests {
    /// The patient's channel and consent, STOP and START, the clinic's wording and rules, and the invitations after a session.
    @Suite struct Messaging {
        let mobile = "+447700900123"

        func moveTo(_ settings: DermisSettings, _ instant: Date) {
            settings.manualClock.advance(by: instant.timeIntervalSince(settings.clock.now()))
        }

        func zoe(_ app: Application, phone: String? = "+447700900123", email: String? = "zoe@example.test") async throws -> Patient {
            try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").set(\.$phoneE164, to: phone).set(\.$email, to: email).update()
            return try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
        }

        func post(_ app: Application, _ path: String, _ fields: [(String, String)], _ headers: HTTPHeaders) async throws -> (HTTPStatus, String) {
            var result: (HTTPStatus, String) = (.ok, "")
            var all = formHeaders
            for (name, value) in headers { all.replaceOrAdd(name: name, value: value) }
            try await app.testing().test(.POST, path, headers: all, body: form(fields)) { res in result = (res.status, res.body.string) }
            return result
        }

        /// Front desk records consent and chooses text messages; each refusal names its field and changes nothing.
        func chooseSMS(_ app: Application, _ settings: DermisSettings, patient: Patient) async throws -> TestStaff {
            let desk = try await makeStaff(app, role: .frontDesk)
            let session = try await signIn(app, desk, clock: settings.clock)
            let path = "/patients/\(try patient.requireID())/messages"
            var (status, page) = try await post(app, path, [("channel", "sms")], session)
            #expect(status == .unprocessableEntity && page.contains("data-field=\"smsConsent\""), "no texts without consent")
            (status, page) = try await post(app, path, [("channel", "sms"), ("smsConsent", "on")], session)
            #expect(status == .unprocessableEntity && page.contains("data-field=\"consentHow\""), "consent says how it was given")
            (status, page) = try await post(app, path, [("channel", "carrier pigeon")], session)
            #expect(status == .unprocessableEntity && page.contains("data-field=\"channel\""))
            #expect(try await MessagePreference.find(try patient.requireID(), on: app.db) == nil, "a refused form stores nothing")
            (status, page) = try await post(app, path, [("channel", "sms"), ("smsConsent", "on"), ("consentHow", "in person")], session)
            #expect(status == .seeOther, "\(page)")
            let preference = try #require(try await MessagePreference.find(try patient.requireID(), on: app.db))
            #expect(preference.preferred == .sms && preference.smsConsentHow == "in person" && preference.smsConsentBy == desk.id
                    && preference.smsConsentAt == settings.clock.now())
            #expect(try await AuditEvent.query(on: app.db).filter(\.$objectType == "MessagePreference").filter(\.$action == "update")
                .filter(\.$outcome == "success").count() == 1)
            return desk
        }

        @Test func textMessagesNeedANumberAndRecordedConsent() async throws {
            try await withDermis { app, settings in
                let patient = try await zoe(app, phone: nil)
                let desk = try await makeStaff(app, role: .frontDesk)
                let session = try await signIn(app, desk, clock: settings.clock)
                let consent = [("channel", "sms"), ("smsConsent", "on"), ("consentHow", "in person")]
                var (status, page) = try await post(app, "/patients/\(try patient.requireID())/messages", consent, session)
                #expect(status == .unprocessableEntity && page.contains("no SMS provider"), "texts are not chosen where none can be sent")
                app.mail = MailSetup(worker: nil, problems: [], sms: FakeSMS())
                (status, page) = try await post(app, "/patients/\(try patient.requireID())/messages", consent, session)
                #expect(status == .unprocessableEntity && page.contains("mobile number"))
                _ = try await self.zoe(app)
                _ = try await chooseSMS(app, settings, patient: patient)
            }
        }

        /// The provider may deliver two STOPs (two replies, or its retry) at the same moment to a patient who never had a
        /// preference row: both are answered 200, and the one row records the STOP.
        @Test func stopsDeliveredAtTheSameMomentAreEachAnswered() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                let sms = FakeSMS()
                app.mail = MailSetup(worker: nil, problems: [], sms: sms)
                let patient = try await zoe(app)
                let id = try patient.requireID()
                #expect(try await MessagePreference.find(id, on: app.db) == nil)
                let (mobile, token) = (mobile, sms.token)
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for n in 0..<8 {
                        group.addTask {
                            let fields = ["Body": "STOP", "From": mobile, "To": "+15550100", "MessageSid": "SMRACE\(n)"]
                            let text = "https://clinic.example/webhooks/sms" + fields.keys.sorted().map { $0 + fields[$0]! }.joined()
                            let signature = Data(HMAC<Insecure.SHA1>.authenticationCode(for: Data(text.utf8), using: SymmetricKey(data: Data(token.utf8))))
                                .base64EncodedString()
                            var status = HTTPStatus.ok
                            try await app.testing().test(.POST, "/webhooks/sms",
                                                         headers: ["Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature],
                                                         body: form(fields.map { ($0.key, $0.value) })) { status = $0.status }
                            return status
                        }
                    }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                #expect(statuses.allSatisfy { $0 == .ok }, "\(statuses)")
                #expect(try await MessagePreference.find(id, on: app.db)?.smsStoppedAt == settings.clock.now())
            }
        }

        @Test func aPatientWhoChoseTextsGetsTextsAndSTOPEndsThemWhileEMailGoesOn() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                let sms = FakeSMS()
                let mail = FakeTransport()
                app.mail = MailSetup(worker: nil, problems: [], sms: sms)
                let worker = OutboxWorker(app: app, transport: mail, from: "clinic@harbour.example", sms: sms)
                let patient = try await zoe(app)
                let id = try patient.requireID()
                _ = try await chooseSMS(app, settings, patient: patient)
                // Her aftercare link goes as a text, with the text's wording and no attachment.
                _ = try await FollowUp().signedSession(app, settings)
                let link = try #require(try await OutboxMessage.query(on: app.db).filter(\.$kind == "aftercare-link").first())
                #expect(link.isSMS && link.recipient == mobile && link.calendar == nil && link.body.contains("/care/"))
                try await worker.runOnce()
                #expect(sms.sent.count == 1 && sms.sent[0].to == mobile && mail.sent.isEmpty)

                // STOP from her number: a forged request changes nothing; the provider's signed one stops texts.
                // Each provider message has its id (MessageSid), which the signature covers.
                func webhook(_ body: String, sid: String, signature: String?) async throws -> HTTPStatus {
                    var headers: HTTPHeaders = ["Content-Type": "application/x-www-form-urlencoded"]
                    if let signature { headers.add(name: "X-Twilio-Signature", value: signature) }
                    var status = HTTPStatus.ok
                    try await app.testing().test(.POST, "/webhooks/sms", headers: headers,
                                                 body: form([("From", mobile), ("Body", body), ("To", "+15550100"), ("MessageSid", sid)])) { status = $0.status }
                    return status
                }
                func sign(_ body: String, sid: String, token: String) -> String {
                    let fields = ["Body": body, "From": mobile, "To": "+15550100", "MessageSid": sid]
                    let text = "https://clinic.example/webhooks/sms" + fields.keys.sorted().map { $0 + fields[$0]! }.joined()
                    return Data(HMAC<Insecure.SHA1>.authenticationCode(for: Data(text.utf8), using: SymmetricKey(data: Data(token.utf8)))).base64EncodedString()
                }
                func signed(_ body: String, _ sid: String) async throws -> HTTPStatus {
                    try await webhook(body, sid: sid, signature: sign(body, sid: sid, token: sms.token))
                }
                #expect(try await webhook("STOP", sid: "SM1", signature: nil) == .forbidden)
                #expect(try await webhook("STOP", sid: "SM1", signature: sign("STOP", sid: "SM1", token: "not-the-token")) == .forbidden)
                #expect(try await webhook("STOP", sid: "SM1", signature: sign("START", sid: "SM1", token: sms.token)) == .forbidden, "the signature covers the text")
                #expect(try await MessagePreference.find(id, on: app.db)?.smsStoppedAt == nil)
                #expect(try await signed("Stop ", "SM1") == .ok)
                #expect(try await MessagePreference.find(id, on: app.db)?.smsStoppedAt == settings.clock.now())

                // A text written before the STOP is not sent, and says why; the next message goes by e-mail instead.
                let queued = OutboxMessage(clinicID: patient.$clinic.id, recipient: mobile, subject: "x", body: "x", kind: "test", at: settings.clock.now())
                queued.channel = "sms"
                queued.patientID = id
                try await queued.create(on: app.db)
                try await worker.runOnce()
                let refused = try #require(try await OutboxMessage.find(try queued.requireID(), on: app.db))
                #expect(refused.status == "dead" && refused.lastError?.contains("replied STOP") == true && sms.sent.count == 1)
                #expect(try await MessageRoute.to(patient: id, email: patient.email, phone: mobile, on: app.db) == .email("zoe@example.test"))
                // Staff cannot turn texts back on over her STOP; her START does, recorded as her consent.
                let session = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let (status, _) = try await post(app, "/patients/\(id)/messages", [("channel", "sms"), ("smsConsent", "on"), ("consentHow", "on the phone")], session)
                #expect(status == .unprocessableEntity)
                #expect(try await signed("START", "SM2") == .ok)
                let resumed = try #require(try await MessagePreference.find(id, on: app.db))
                // Her first STOP, captured and sent again with its own signature: answered, not acted on.
                #expect(try await signed("Stop ", "SM1") == .ok)
                #expect(try await MessagePreference.find(id, on: app.db)?.smsStoppedAt == nil, "a replayed STOP is not acted on twice")
                #expect(try await webhook("STOP", sid: "", signature: sign("STOP", sid: "", token: sms.token)) == .badRequest)
                #expect(resumed.smsStoppedAt == nil && resumed.smsConsentHow == "in person", "START undoes the STOP; her consent is the one she gave")
                // A START (or a stray "yes") from a patient who never stopped records no consent for them.
                let jose = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Álvarez").first())
                let josePhone = try #require(jose.phoneE164)
                var headers: HTTPHeaders = ["Content-Type": "application/x-www-form-urlencoded"]
                let fields = ["Body": "YES", "From": josePhone, "To": "+15550100", "MessageSid": "SM-jose"]
                let text = "https://clinic.example/webhooks/sms" + fields.keys.sorted().map { $0 + fields[$0]! }.joined()
                headers.add(name: "X-Twilio-Signature", value: Data(HMAC<Insecure.SHA1>.authenticationCode(
                    for: Data(text.utf8), using: SymmetricKey(data: Data(sms.token.utf8)))).base64EncodedString())
                try await app.testing().test(.POST, "/webhooks/sms", headers: headers, body: form(fields.map { ($0.key, $0.value) })) { #expect($0.status == .ok) }
                #expect(try await MessagePreference.find(try jose.requireID(), on: app.db) == nil)
                #expect(try await MessageRoute.to(patient: id, email: patient.email, phone: mobile, on: app.db) == .sms(mobile))
                #expect(try await AuditEvent.query(on: app.db).filter(\.$objectType == "MessagePreference").filter(\.$patientID == id).count() >= 3)
            }
        }

        @Test func theProvidersRefusalIsDeadWithItsAnswerAndItsTroubleIsRetried() async throws {
            try await withDermis { app, settings in
                let sms = FakeSMS()
                let worker = OutboxWorker(app: app, transport: nil, from: "", sms: sms)
                let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
                var ids: [UUID] = []
                for channel in ["sms", "sms", "email"] {
                    let m = OutboxMessage(clinicID: clinic, recipient: channel == "sms" ? mobile : "a@example.test", subject: "s", body: "b",
                                          kind: "test", at: settings.clock.now())
                    m.channel = channel
                    try await m.create(on: app.db)
                    settings.manualClock.advance(by: 1)
                    ids.append(try m.requireID())
                }
                sms.answer([MailError(permanent: true, message: "the SMS provider answered 400: The 'To' number is not a valid phone number. (code 21211)"),
                            MailError(permanent: false, message: "the SMS provider answered 503: busy")])
                #expect(try await worker.runOnce() == 2, "a worker without e-mail leaves e-mail waiting")
                let first = try #require(try await OutboxMessage.find(ids[0], on: app.db))
                let second = try #require(try await OutboxMessage.find(ids[1], on: app.db))
                let third = try #require(try await OutboxMessage.find(ids[2], on: app.db))
                #expect(first.status == "dead" && first.lastError?.contains("21211") == true)
                #expect(second.status == "retry" && third.status == "queued")
            }
        }

        @Test func aBadSMSSettingIsRefusedAtStartNamingIt() {
            func field(_ url: String, from: String? = "+15550100", user: String? = "AC1", password: String? = "t") -> String? {
                do {
                    _ = try SMSSettings.parse(url: url, from: from, user: user, password: password)
                    return nil
                } catch let invalid as InvalidInput { return invalid.issues.first?.path } catch { return "?" }
            }
            #expect(field("http://sms.example/Messages.json") == "DERMIS_SMS_URL", "plain http only to this machine")
            #expect(field("https://AC1:secret@sms.example/x") == "DERMIS_SMS_URL", "credentials do not go in the URL")
            #expect(field("https://sms.example/x", from: "0207") == "DERMIS_SMS_FROM")
            #expect(field("https://sms.example/x", user: nil) == "DERMIS_SMS_USER")
            #expect(field("https://sms.example/x", password: "") == "DERMIS_SMS_PASSWORD")
            #expect(field("http://127.0.0.1:9/x") == nil && field("https://sms.example/x", from: "Harbour") == nil)
        }

        @Test func adminsWordMessagesCheckedAndPreviewedAndTheNextMessageUsesIt() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                let session = try await signIn(app, admin, clock: settings.clock)
                let path = "/admin/messages/templates/aftercare-link"
                let good = [("subject", "Aftercare from {{clinic}}"), ("body", "Hi <b>{{name}}</b>, here: {{link}}"), ("sms", "{{clinic}}: {{link}}")]
                func with(_ field: String, _ value: String, action: String = "save") -> [(String, String)] {
                    good.map { $0.0 == field ? ($0.0, value) : $0 } + [("action", action)]
                }
                let (opened, _) = try await FollowUp().get(app, path, headers: session)
                #expect(opened == .ok, "\(TestLog.text.suffix(1500))")
                for (field, value, says) in [("body", "Hi {{nmae}} {{link}}", "{{nmae}} is not a placeholder"), ("sms", "{{clinic}}: {{link", "never closed"),
                                             ("body", "Hi {{name}}", "must keep {{link}}"), ("subject", "", "must not be empty")] {
                    let (status, page) = try await post(app, path, with(field, value), session)
                    #expect(status == .unprocessableEntity, "\(status) \(page.prefix(300))")
                    #expect(status == .unprocessableEntity && page.contains("data-field=\"\(field)\"")
                            && page.contains(says.replacingOccurrences(of: "'", with: "&#39;")), "\(field): \(value)")
                }
                #expect(try await MessageTemplate.query(on: app.db).count() == 0, "nothing refused is stored")
                // The preview fills sample values and escapes what it shows; it saves nothing.
                let (previewed, page) = try await post(app, path, with("body", good[1].1, action: "preview"), session)
                #expect(previewed == .ok && page.contains("Hi &lt;b&gt;Noor&lt;/b&gt;, here: https://clinic.example/care/"))
                #expect(try await MessageTemplate.query(on: app.db).count() == 0)
                let (saved, _) = try await post(app, path, with("body", good[1].1), session)
                #expect(saved == .seeOther)
                // Front desk may not.
                let desk = try await signIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                #expect(try await post(app, path, with("body", "x {{link}}"), desk).0 == .forbidden)

                _ = try await zoe(app)
                _ = try await FollowUp().signedSession(app, settings)
                let message = try #require(try await OutboxMessage.query(on: app.db).filter(\.$kind == "aftercare-link").first())
                let clinicName = try #require(try await Clinic.query(on: app.db).first()).name
                #expect(message.subject == "Aftercare from \(clinicName)")
                #expect(message.body.hasPrefix("Hi <b>Zoë</b>, here: http"), "the text part is plain text; the HTML part escapes it")
                #expect(OutboxWorker.html(message.body).contains("Hi &lt;b&gt;Zoë&lt;/b&gt;"))
                // Back to the standard wording.
                #expect(try await post(app, path, [("action", "reset")], session).0 == .seeOther)
                #expect(try await MessageTemplate.query(on: app.db).count() == 0)
            }
        }

        @Test func aClinicsReminderLeadsAndQuietHoursAreItsOwnAndCheckedNamingTheField() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                let session = try await signIn(app, admin, clock: settings.clock)
                for (fields, field) in [([("reminderHours", "24, 0"), ("quietStart", "21"), ("quietEnd", "8")], "reminderHours"),
                                        ([("reminderHours", "24, 24"), ("quietStart", "21"), ("quietEnd", "8")], "reminderHours"),
                                        ([("reminderHours", "24"), ("quietStart", "25"), ("quietEnd", "8")], "quietStart")] {
                    let (status, page) = try await post(app, "/admin/messages/rules", fields, session)
                    #expect(status == .unprocessableEntity, "\(status) \(page.prefix(300))")
                    #expect(status == .unprocessableEntity && page.contains("data-field=\"\(field)\""))
                }
                #expect(try await post(app, "/admin/messages/rules", [("reminderHours", "3, 24"), ("quietStart", "22"), ("quietEnd", "7")], session).0 == .seeOther)
                let clinic = try #require(try await Clinic.query(on: app.db).first()).requireID()
                let rules = try await MessagingRules.load(clinic: clinic, on: app.db)
                #expect(rules == MessagingRules(reminderHours: [24, 3], quiet: QuietHours(startHour: 22, endHour: 7)))

                // A booking four days ahead: reminders at 24 and 3 hours, none at 48.
                let desk = try await AppTests.Scheduling().desk(app, settings)
                let patient = try await zoe(app)
                let start = try #require(try await desk.slots(on: "2026-12-01", patient: try patient.requireID()).first?["start"] as? String)
                let (_, booked, _) = try await desk.book(start, patient: try patient.requireID())
                let id = try #require(UUID(uuidString: booked["id"] as? String ?? ""))
                let appointment = try #require(try await Appointment.find(id, on: app.db))
                settings.manualClock.advance(by: appointment.startsAt.addingTimeInterval(-48 * 3600).timeIntervalSince(settings.clock.now()))
                #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 0)
                settings.manualClock.advance(by: 24 * 3600)
                #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 1)
                settings.manualClock.advance(by: 21 * 3600)
                #expect(try await AppointmentNotices.scheduleReminders(on: app.db, now: settings.clock.now()) == 1)
                let kinds = Set(try await OutboxMessage.query(on: app.db).filter(\.$subjectID == id).all().compactMap(\.kind))
                #expect(kinds.isSuperset(of: ["reminder-24h", "reminder-3h"]) && !kinds.contains("reminder-48h"))
            }
        }

        @Test func afterASessionThePatientIsInvitedToCheckInOnTheProtocolsDaysAndRemindedWhenSilent() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                _ = try await zoe(app)
                let signed = try await FollowUp().signedSession(app, settings)
                let invitations = try #require(app.dermis.clinicalProtocol.followUp.invitations)
                let zone = try #require(try await Clinic.query(on: app.db).first()).zone
                var calendar = Calendar(identifier: .gregorian)
                calendar.timeZone = zone
                func day(_ n: Int) -> Date {
                    calendar.date(bySettingHour: invitations.localHour, minute: 0, second: 0,
                                  of: calendar.date(byAdding: .day, value: n, to: calendar.startOfDay(for: signed.signedAt))!)!
                }
                func written(_ kind: String) async throws -> [OutboxMessage] {
                    try await OutboxMessage.query(on: app.db).filter(\.$kind == kind).all()
                }
                let first = try #require(invitations.checkInDays.first)
                moveTo(settings, day(first).addingTimeInterval(-1))
                #expect(try await FollowUpInvitations.schedule(app: app, now: settings.clock.now()) == 0, "not a second early")
                moveTo(settings, day(first))
                #expect(try await FollowUpInvitations.schedule(app: app, now: settings.clock.now()) == 1)
                #expect(try await FollowUpInvitations.schedule(app: app, now: settings.clock.now()) == 0, "written once")
                let invitation = try #require(try await written("check-in").first)
                let path = try #require(invitation.body.range(of: #"/care/[A-Za-z0-9_-]+"#, options: .regularExpression).map { String(invitation.body[$0]) })
                let (status, page) = try await FollowUp().get(app, path)
                #expect(status == .ok && page.contains("Zoë"), "the invitation carries her working link")
                #expect(invitation.recipient == "zoe@example.test" && !invitation.body.replacing(/https?:\/\/\S+/, with: "").contains("mm"))

                // Silent since the day-1 invitation: reminded overdueAfterDays later, not a second before, once.
                moveTo(settings, day(first + invitations.overdueAfterDays).addingTimeInterval(-1))
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                #expect(try await written("check-in-overdue").isEmpty)
                moveTo(settings, day(first + invitations.overdueAfterDays))
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                #expect(try await written("check-in-overdue").count == 1)

                // She answers the next invitation: no reminder for it.
                let second = invitations.checkInDays[1]
                moveTo(settings, day(second))
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                settings.manualClock.advance(by: 3600)
                let (answered, _) = try await FollowUp().checkIn(app, path, [("redness", "1"), ("pain", "1")])
                #expect(answered == .created)
                moveTo(settings, day(second + invitations.overdueAfterDays))
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                #expect(try await written("check-in-overdue").count == 1)
                #expect(try await written("check-in").count == 2)

                // The first session of a three-session series: no invitation to rate the result.
                moveTo(settings, day(invitations.rateResultDay))
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                #expect(try await written("rate-result").isEmpty)

                // An invitation still waiting when its link is withdrawn — a new link issued in its place — is not sent with
                // the dead link, and says why.
                let waiting = try #require(try await written("check-in").first)
                try await OutboxMessage.query(on: app.db).filter(\.$id == waiting.id!).set(\.$status, to: "queued").update()
                let course = Course(app: app, session: try await FollowUp().again(app, signed, settings), patientID: signed.course.patientID)
                let (reissued, _, reissueText) = try await course.call(.POST, "/sessions/\(signed.chartID)/link")
                #expect(reissued == .created, "\(reissueText)")
                let transport = FakeTransport()
                try await OutboxWorker(app: app, transport: transport, from: "clinic@harbour.example").runOnce(limit: 50)
                let refused = try #require(try await OutboxMessage.find(waiting.id, on: app.db))
                #expect(refused.status == "dead" && refused.lastError?.contains("withdrawn") == true)
                #expect(!transport.sent.contains { $0.messageID == OutboxWorker.messageID(waiting.id!) })
            }
        }

        @Test func theLastSessionOfASeriesInvitesThePatientToRateTheResult() async throws {
            try await withDermis(change: { $0.publicURL = "https://clinic.example" }) { app, settings in
                _ = try await zoe(app)
                let signed = try await FollowUp().signedSession(app, settings)
                // Her plan as a single-session series: this session ends it.
                let session = try #require(try await TreatmentSession.query(on: app.db).filter(\.$chartID == UUID(uuidString: signed.chartID)!).first())
                let plan = try #require(try await TreatmentPlanRecord.find(session.$plan.id, on: app.db))
                var result = try plan.plan
                result.series.sessions = 1
                plan.result = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
                try await plan.save(on: app.db)
                let invitations = try #require(app.dermis.clinicalProtocol.followUp.invitations)
                settings.manualClock.advance(by: Double(invitations.rateResultDay) * 86_400)
                try await FollowUpInvitations.schedule(app: app, now: settings.clock.now())
                let invitation = try #require(try await OutboxMessage.query(on: app.db).filter(\.$kind == "rate-result").first())
                #expect(invitation.body.contains("https://clinic.example/care/"))
            }
        }
    }
}
