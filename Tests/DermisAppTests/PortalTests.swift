import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// The patient's own pages: the passwordless sign-in (as its user and its abuser would use it), the session's limits,
    /// the intake and consent at home, booking, moving and cancelling, aftercare, shared photos, and what staff see.
    @Suite struct Portal {
        static let zoeEmail = DemoClinic.patientEmail

        // MARK: Helpers

        func post(_ app: Application, _ path: String, _ fields: [(String, String)], headers extra: HTTPHeaders = [:]) async throws -> (HTTPStatus, String, HTTPHeaders) {
            var headers = formHeaders
            for (name, value) in extra { headers.replaceOrAdd(name: name, value: value) }
            var result: (HTTPStatus, String, HTTPHeaders) = (.ok, "", [:])
            try await app.testing().test(.POST, path, headers: headers, body: form(fields)) { res in result = (res.status, res.body.string, res.headers) }
            return result
        }

        func get(_ app: Application, _ path: String, headers: HTTPHeaders = [:]) async throws -> (HTTPStatus, String, HTTPHeaders) {
            var result: (HTTPStatus, String, HTTPHeaders) = (.ok, "", [:])
            try await app.testing().test(.GET, path, headers: headers) { res in result = (res.status, res.body.string, res.headers) }
            return result
        }

        /// The sign-in messages written so far, newest last.
        func signInMessages(_ app: Application) async throws -> [OutboxMessage] {
            try await OutboxMessage.query(on: app.db).filter(\.$kind == MessageKind.portalSignIn.rawValue).sort(\.$createdAt).all()
        }

        func token(in message: OutboxMessage) throws -> String {
            let range = try #require(message.body.range(of: #"/my/link/[A-Za-z0-9_-]+"#, options: .regularExpression))
            return String(message.body[range].dropFirst("/my/link/".count))
        }

        /// Asks for a link for `address` and presses it: the patient's cookie header.
        func signIn(_ app: Application, _ address: String = zoeEmail) async throws -> HTTPHeaders {
            let before = try await signInMessages(app).count
            let (asked, _, _) = try await post(app, "/my/sign-in", [("address", address)])
            #expect(asked == .ok)
            let messages = try await signInMessages(app)
            #expect(messages.count == before + 1)
            let (status, _, headers) = try await post(app, "/my/link/\(try token(in: try #require(messages.last)))", [])
            #expect(status == .seeOther && headers.first(name: .location) == "/my")
            let cookie = try #require(headers[.setCookie].first { $0.hasPrefix("dermis_patient=") }?.components(separatedBy: ";").first)
            var session = sameSite
            session.add(name: .cookie, value: cookie)
            return session
        }

        func zoe(_ app: Application) async throws -> Patient {
            try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
        }

        // MARK: Signing in

        @Test func aLinkArrivesOnlyForAKnownAddressAndThePageNeverSaysWhich() async throws {
            try await withDermis { app, _ in
                let (known, knownPage, _) = try await post(app, "/my/sign-in", [("address", "  ZOE@Patient.Demo.Dermis.Test ")])
                let (unknown, unknownPage, _) = try await post(app, "/my/sign-in", [("address", "nobody@example.com")])
                #expect(known == .ok && unknown == .ok)
                #expect(knownPage == unknownPage, "the answer must not reveal whether the address is known")
                let messages = try await signInMessages(app)
                let zoeID = try await zoe(app).id
                #expect(messages.count == 1 && messages[0].recipient == Self.zoeEmail && messages[0].patientID == zoeID)
                // Only the digest is stored; the token travels in the message alone.
                let token = try self.token(in: messages[0])
                #expect(token.count >= 43, "256 bits, base64url")
                let stored = try #require(try await PortalSignInLink.query(on: app.db).first())
                #expect(stored.tokenHash == Secrets.digest(token) && stored.tokenHash != token)
                #expect(stored.expiresAt.timeIntervalSince(stored.createdAt) == 15 * 60)
                // A phone number as the clinic stores it (E.164) finds the patient too, and goes by text.
                let (_, _, _) = try await post(app, "/my/sign-in", [("address", "+44 (7700) 900-101")])
                let texts = try await signInMessages(app).filter { $0.channel == "sms" }
                #expect(texts.count == 1 && texts[0].recipient == "+447700900101")
            }
        }

        @Test func badAddressesAreNamedAndNothingIsSent() async throws {
            try await withDermis { app, _ in
                for (typed, problem) in [("", "enter your e-mail"), ("zoe@", "not an e-mail address"), ("07700 900101", "country code"),
                                         (String(repeating: "a", count: 250) + "@x.com", "too long")] {
                    let (status, page, _) = try await post(app, "/my/sign-in", [("address", typed)])
                    #expect(status == .unprocessableEntity, "\(typed)")
                    #expect(page.contains("data-field=\"address\"") && page.contains(problem), "\(typed)")
                }
                #expect(try await signInMessages(app).isEmpty)
            }
        }

        @Test func theLinkPointsAtThisServerNeverAtTheHostTheRequestNamed() async throws {
            try await withDermis { app, _ in
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)],
                                   headers: ["Host": "evil.example", "Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"])
                let message = try #require(try await signInMessages(app).first)
                #expect(!message.body.contains("evil.example"))
            }
        }

        @Test func aLinkWorksOnceWithinFifteenMinutesAndOpeningItDoesNotSpendIt() async throws {
            try await withDermis { app, settings in
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)])
                let token = try self.token(in: try #require(try await signInMessages(app).last))
                // A mail scanner fetching the link does not spend it.
                #expect(try await get(app, "/my/link/\(token)").0 == .ok)
                #expect(try await get(app, "/my/link/\(token)").1.contains("id=\"use-link\""))
                // The last second of its 15 minutes still works…
                settings.manualClock.advance(by: 15 * 60 - 1)
                let (used, _, headers) = try await post(app, "/my/link/\(token)", [])
                #expect(used == .seeOther && headers[.setCookie].contains { $0.hasPrefix("dermis_patient=") && $0.contains("HttpOnly") })
                // …once.
                let (again, page, _) = try await post(app, "/my/link/\(token)", [])
                #expect(again == .gone && page.contains("already used") && page.contains("/my/sign-in"))
                // A fresh link at exactly 15 minutes is expired, and says what to do.
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)])
                let second = try self.token(in: try #require(try await signInMessages(app).last))
                settings.manualClock.advance(by: 15 * 60)
                let (expired, expiredPage, _) = try await post(app, "/my/link/\(second)", [])
                #expect(expired == .gone && expiredPage.contains("expired") && expiredPage.contains("Ask for a new link"))
                // Unknown tokens are 404, and an address guessing many is stopped.
                #expect(try await get(app, "/my/link/\(String(repeating: "x", count: 43))").0 == .notFound)
                for _ in 0..<PatientLinks.missesPerAddressPerHour { _ = try await get(app, "/my/link/\(String(repeating: "y", count: 43))") }
                #expect(try await get(app, "/my/link/\(second)").0 == .tooManyRequests)
            }
        }

        @Test func linksAreLimitedPerAddressAndPerPatientWithoutRevealingEither() async throws {
            try await withDermis { app, settings in
                for _ in 0..<PortalSessions.linksPerAddressPerHour { _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)]) }
                let (status, page, _) = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)])
                #expect(status == .ok && page.contains("Several links were asked"))
                #expect(try await signInMessages(app).count == PortalSessions.linksPerAddressPerHour)
                // The same words for an unknown address past its limit.
                for _ in 0...PortalSessions.linksPerAddressPerHour { _ = try await post(app, "/my/sign-in", [("address", "nobody@example.com")]) }
                #expect(try await post(app, "/my/sign-in", [("address", "nobody@example.com")]).1 == page)
                // Per patient, across addresses: the phone number adds links only up to the day's limit.
                settings.manualClock.advance(by: 3601)
                for _ in 0..<PortalSessions.linksPerAddressPerHour { _ = try await post(app, "/my/sign-in", [("address", "+447700900101")]) }
                #expect(try await signInMessages(app).count == PortalSessions.linksPerAddressPerHour * 2)
                settings.manualClock.advance(by: 3601)
                for _ in 0..<PortalSessions.linksPerAddressPerHour { _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)]) }
                #expect(try await signInMessages(app).count == PortalSessions.linksPerPatientPerDay)
            }
        }

        @Test func aPatientSessionOpensOnlyThatPatientsPagesForThirtyDays() async throws {
            try await withDermis { app, settings in
                let patient = try await signIn(app)
                let (home, page, _) = try await get(app, "/my", headers: patient)
                #expect(home == .ok && page.contains("Hello Zoë"))
                // The patient's cookie is no staff session, and a staff session is no patient's.
                #expect(try await get(app, "/patients", headers: patient).2.first(name: .location)?.hasPrefix("/login") == true)
                let staff = try await staffSignIn(app, try await makeStaff(app, role: .admin), clock: settings.clock)
                #expect(try await get(app, "/my", headers: staff).2.first(name: .location) == "/my/sign-in")
                // Every page read is audited with the patient as the actor.
                let zoeID = try await zoe(app).requireID()
                let rows = try await AuditEvent.query(on: app.db).filter(\.$actorID == zoeID).all()
                #expect(rows.contains { $0.objectType == "PortalSession" && $0.action == AuditAction.signIn.rawValue })
                #expect(rows.contains { $0.objectType == "Patient" && $0.action == AuditAction.read.rawValue && $0.patientID == zoeID })
                #expect(rows.allSatisfy { $0.actorEmail == AuditLog.patientActor })
                // Day 30 less a second: still in; at 30 days: out.
                settings.manualClock.advance(by: 30 * 86_400 - 1)
                #expect(try await get(app, "/my", headers: patient).0 == .ok)
                settings.manualClock.advance(by: 1)
                #expect(try await get(app, "/my", headers: patient).2.first(name: .location) == "/my/sign-in")
            }
        }

        @Test func thePatientAndStaffEndSessions() async throws {
            try await withDermis { app, settings in
                let phone = try await signIn(app)
                let laptop = try await signIn(app)
                let (_, devices, _) = try await get(app, "/my/account", headers: phone)
                #expect(devices.components(separatedBy: "<li>").count - 1 == 2)
                // Signing out ends this device only.
                #expect(try await post(app, "/my/sign-out", [], headers: phone).0 == .seeOther)
                #expect(try await get(app, "/my", headers: phone).0 == .seeOther)
                #expect(try await get(app, "/my", headers: laptop).0 == .ok)
                // Staff end the rest (a lost phone), from the patient's record.
                let desk = try await staffSignIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                let zoeID = try await zoe(app).requireID()
                #expect(try await get(app, "/patients/\(zoeID)", headers: desk).1.contains("id=\"portal-devices\">1<"))
                #expect(try await post(app, "/patients/\(zoeID)/portal/end", [], headers: desk).0 == .seeOther)
                #expect(try await get(app, "/my", headers: laptop).0 == .seeOther)
                let ended = try await PortalSession.query(on: app.db).all()
                #expect(ended.allSatisfy { $0.endedAt != nil } && ended.contains { $0.endedBy != nil })
                // Sign out everywhere, from the patient's side (an hour on: the address's links are limited per hour).
                settings.manualClock.advance(by: 3601)
                let a = try await signIn(app), b = try await signIn(app)
                #expect(try await post(app, "/my/sign-out-everywhere", [], headers: a).0 == .seeOther)
                #expect(try await get(app, "/my", headers: b).0 == .seeOther)
            }
        }

        // MARK: Before the first visit

        @Test func whatToExpectIsWorkedOutFromTheProtocolForTheirAreasAndPlannedDepth() async throws {
            try await withDermis { app, settings in
                let patient = try await signIn(app)
                let p = app.dermis.clinicalProtocol
                let (status, before, _) = try await get(app, "/my/expect", headers: patient)
                #expect(status == .ok)
                let face = p.zones.filter { $0.region == "face" }.map(\.id)
                #expect(before.contains("about \(try Planning.appointmentMinutes(zones: face, protocol: p)) minutes"))
                let range = "\(p.downtime.map(\.minDays).min()!)–\(p.downtime.map(\.maxDays).max()!) days"
                #expect(before.contains("Depending on the depth") && before.contains(range))
                #expect(before.contains("Until you choose your areas") && before.contains(p.procedure.passesSource.replacingOccurrences(of: "'", with: "&#39;")))
                // Every rule in the patient's words — but a rule bound to areas (the neck's skin types) only when one is chosen.
                for rule in p.contraindications {
                    let applies = rule.zones.map { !Set($0).isDisjoint(with: face) } ?? true
                    #expect(before.contains(rule.forPatients!.replacingOccurrences(of: "'", with: "&#39;")) == applies, "\(rule.id)")
                }
                // Planned: cheeks at 1.5 mm and forehead at 0.25 mm: the deepest band, 4–5 days, for those two areas' minutes.
                let staff = try await makeStaff(app, role: .practitioner)
                let course = Course(app: app, session: try await staffSignIn(app, staff, clock: settings.clock), patientID: try await zoe(app).requireID())
                try await course.intake()
                _ = try await course.plan()
                let (_, planned, _) = try await get(app, "/my/expect", headers: patient)
                #expect(planned.contains("up to 1.5 mm") && planned.contains("4–5 days"))
                #expect(planned.contains("about \(try Planning.appointmentMinutes(zones: ["cheeks", "forehead"], protocol: p)) minutes"))
                #expect(planned.contains(p.downtime[1].source))
            }
        }

        @Test func theIntakeAtHomeIsANewVersionFromThePatientAndShowsOnlyADeferralWithItsDate() async throws {
            try await withDermis { app, settings in
                let patient = try await signIn(app)
                // Bad input is named and nothing is stored.
                let (bad, badPage, _) = try await post(app, "/my/intake", [("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "9"), ("zone", "cheeks")],
                                                        headers: patient)
                #expect(bad == .unprocessableEntity && badPage.contains("data-field=\"fitzpatrickType\""))
                #expect(try await IntakeRecord.query(on: app.db).count() == 0)
                // Isotretinoin stopped on 2026-09-01: a deferral until six months after, shown with its date.
                let answers = [("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "3"), ("zone", "cheeks"),
                               ("medication.isotretinoin", "stopped"), ("lastDose.isotretinoin", "2026-09-01"), ("medication.anticoagulant", "none")]
                let (saved, page, _) = try await post(app, "/my/intake", answers, headers: patient)
                #expect(saved == .created && page.contains("data-deferred=\"true\"") && page.contains("1 March 2027"))
                let record = try #require(try await IntakeRecord.query(on: app.db).first())
                let zoeID = try await zoe(app).requireID()
                #expect(record.source == RecordSource.patientPortal && record.createdBy == zoeID)
                // A not-eligible finding is the practitioner's to review: no verdict, no rule text on the patient's page.
                let (_, review, _) = try await post(app, "/my/intake", [("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "3"), ("zone", "cheeks"),
                                                                          ("medication.anticoagulant", "current")], headers: patient)
                let bloodThinners = try #require(app.dermis.clinicalProtocol.contraindications.first { $0.id == "anticoagulant" }?.forPatients)
                #expect(review.contains("data-deferred=\"false\"") && review.contains("will review"))
                #expect(!review.contains(bloodThinners) && !review.contains("deferral-reasons") && !review.contains("anticoagulant"))
                // Staff see that these answers are the patient's own.
                let practitioner = try await staffSignIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let (_, course, _) = try await get(app, "/patients/\(zoeID)/course", headers: practitioner)
                #expect(course.contains("answered by the patient at home"))
                let screening = try #require(try await ScreeningRecord.query(on: app.db).sort(\.$createdAt, .descending).first())
                #expect(try await get(app, "/patients/\(zoeID)/screenings/\(screening.requireID())", headers: practitioner).1.contains("id=\"from-patient\""))
                #expect(try await get(app, "/patients/\(zoeID)/intake/new", headers: practitioner).1.contains("id=\"from-patient\""))
                // In FHIR the answers are the patient's (author and source), and the screening names no practitioner.
                let fhir = try await FHIRTestClient.make(app, role: .practitioner)
                let given = try #require(try await fhir.send(.GET, "/QuestionnaireResponse?subject=Patient/\(zoeID.fhirID)").entries.first)
                #expect((given["author"] as? [String: Any])?["reference"] as? String == "Patient/\(zoeID.fhirID)")
                #expect((given["source"] as? [String: Any])?["reference"] as? String == "Patient/\(zoeID.fhirID)")
                let risk = try #require(try await fhir.send(.GET, "/RiskAssessment?subject=Patient/\(zoeID.fhirID)").entries.first)
                #expect(risk["performer"] == nil)
            }
        }

        @Test func consentAtHomeRunsTheClinicsChecksAndStaffSeeTheSignatureAndQuestions() async throws {
            try await withDermis { app, settings in
                let patient = try await signIn(app)
                #expect(try await get(app, "/my/consent", headers: patient).1.contains("id=\"no-plan\""))
                let staff = try await makeStaff(app, role: .practitioner)
                let course = Course(app: app, session: try await staffSignIn(app, staff, clock: settings.clock), patientID: try await zoe(app).requireID())
                try await course.intake()
                _ = try await course.plan()
                let (_, form, _) = try await get(app, "/my/consent", headers: patient)
                #expect(form.contains("id=\"consent-form\"") && form.contains("Cheeks: up to 1.5 mm") && form.contains("name=\"planID\""))
                // The same checks as at the clinic: the registered name and a drawing.
                let read = try #require(try await TreatmentPlanRecord.query(on: app.db).first()).requireID().uuidString
                let text = try #require(try await ConsentTemplate.query(on: app.db).first()).requireID().uuidString
                // Without the text version she read, nothing is signed.
                #expect(try await post(app, "/my/consent", [("typedName", "Zoe Lefevre"), ("signature", "data:image/png;base64,\(tinyPNG)"),
                                                             ("planID", read)], headers: patient).0 == .conflict)
                let (wrong, wrongPage, _) = try await post(app, "/my/consent", [("typedName", "Someone Else"), ("signature", ""), ("planID", read),
                                                                                 ("templateID", text)], headers: patient)
                #expect(wrong == .unprocessableEntity && wrongPage.contains("data-field=\"typedName\"") && wrongPage.contains("data-field=\"signature\""))
                #expect(try await ConsentRecord.query(on: app.db).count() == 0)
                // She signs the plan she read: a version saved while she read it must be read first.
                _ = try await course.plan(depths: ["cheeks": 1.0])
                let signature = "data:image/png;base64,\(tinyPNG)"
                let (stale, stalePage, _) = try await post(app, "/my/consent", [("typedName", "Zoe Lefevre"), ("signature", signature), ("planID", read),
                                                                                   ("templateID", text)],
                                                          headers: patient)
                #expect(stale == .conflict && stalePage.contains("changed your treatment plan") && stalePage.contains("Cheeks: up to 1.0 mm"))
                #expect(try await ConsentRecord.query(on: app.db).count() == 0)
                let current = try #require(try await TreatmentPlanRecord.query(on: app.db).filter(\.$version == 2).first()).requireID().uuidString
                let (signed, _, _) = try await post(app, "/my/consent", [("typedName", "Zoe Lefevre"), ("signature", signature), ("planID", current),
                                                                                 ("templateID", text)],
                                                    headers: patient)
                #expect(signed == .seeOther)
                let consent = try #require(try await ConsentRecord.query(on: app.db).first())
                let zoeID = try await zoe(app).requireID()
                #expect(consent.source == RecordSource.patientPortal && consent.recordedBy == zoeID)
                let (_, printable, _) = try await get(app, "/patients/\(zoeID)/consents/\(consent.requireID())", headers: course.session)
                #expect(printable.contains("Signed by the patient at home") && printable.contains("signature-verified"))
                #expect(try await get(app, "/my/consent", headers: patient).1.contains("id=\"consent-signed\""))
                // A question for the clinic: empty is named; a real one reaches the practitioner's today board and course.
                #expect(try await post(app, "/my/questions", [("question", "  ")], headers: patient).0 == .unprocessableEntity)
                #expect(try await post(app, "/my/questions", [("question", "Can I wear sunscreen the next day?")], headers: patient).0 == .seeOther)
                let practitioner = try await staffSignIn(app, staff, clock: settings.clock)
                #expect(try await get(app, "/today", headers: practitioner).1.contains("Can I wear sunscreen the next day?"))
                let question = try #require(try await PortalQuestion.query(on: app.db).first())
                #expect(try await post(app, "/patients/\(zoeID)/questions/\(question.requireID())/answered", [], headers: practitioner).0 == .seeOther)
                #expect(!(try await get(app, "/today", headers: practitioner).1.contains("Can I wear sunscreen the next day?")))
            }
        }

        // MARK: During the course

        @Test func bookingTheNextSessionObeysTheIntervalAndChangesObeyTheNoticePeriod() async throws {
            try await withDermis { app, settings in
                let signed = try await FollowUp().signedSession(app, settings)
                let patient = try await signIn(app)
                let zoeID = try await zoe(app).requireID()
                let plan = try #require(try await TreatmentPlanRecord.query(on: app.db).filter(\.$patient.$id == zoeID).first())
                let interval = try plan.plan.series.minIntervalDays
                let clinic = try #require(try await Clinic.query(on: app.db).first())
                let earliest = CalendarDate(signed.signedAt, in: clinic.zone).adding(days: interval)
                let (status, page, _) = try await get(app, "/my/book", headers: patient)
                #expect(status == .ok && page.contains("id=\"interval-note\""))
                // Every time offered is on or after the first day the interval allows.
                let offered = page.components(separatedBy: "name=\"start\" value=\"").dropFirst().compactMap {
                    ISO8601DateFormatter().date(from: String($0.prefix(20)))
                }
                #expect(!offered.isEmpty)
                #expect(offered.allSatisfy { CalendarDate($0, in: clinic.zone) >= earliest })
                // A time before it, sent by hand, is refused with the reason; nothing is booked.
                let location = try #require(try await Location.query(on: app.db).first()).requireID().uuidString
                let early = ISO8601DateFormatter().string(from: offered[0].addingTimeInterval(-7 * 86_400))
                let (refused, refusedPage, _) = try await post(app, "/my/book", [("start", early), ("location", location)], headers: patient)
                #expect(refused == .conflict && refusedPage.contains("data-field=\"start\""))
                let (booked, _, _) = try await post(app, "/my/book", [("start", ISO8601DateFormatter().string(from: offered[0])), ("location", location)],
                                                    headers: patient)
                #expect(booked == .seeOther)
                let appointment = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == zoeID).filter(\.$source == "patient-portal").first())
                let id = try appointment.requireID()
                // One next session at a time.
                #expect(try await get(app, "/my/book", headers: patient).1.contains("id=\"book-blocked\""))
                // Its calendar file; another patient's appointment is not found.
                let (ics, icsBody, icsHeaders) = try await get(app, "/my/appointments/\(id)/calendar.ics", headers: patient)
                #expect(ics == .ok && icsBody.contains("BEGIN:VEVENT") && icsHeaders.first(name: .contentType)?.hasPrefix("text/calendar") == true)
                #expect(try await get(app, "/my/appointments/\(UUID())/calendar.ics", headers: patient).0 == .notFound)
                // Notice period 24 h: a day and a second before, the patient may cancel; a second inside it, not.
                let notice = Double(clinic.cancellationNoticeHours ?? Clinic.defaultNoticeHours) * 3600
                settings.manualClock.advance(by: appointment.startsAt.timeIntervalSince(settings.clock.now()) - notice - 1)
                let renewed = try await signIn(app)
                #expect(try await get(app, "/my", headers: renewed).1.contains("id=\"cancel-\(id)\""))
                settings.manualClock.advance(by: 2)
                let (late, latePage, _) = try await post(app, "/my/appointments/\(id)/cancel", [], headers: renewed)
                #expect(late == .conflict && latePage.contains("data-field=\"appointment\"") && latePage.contains("please call the clinic on"))
                #expect(latePage.contains("Hello Zoë"), "refused on her home page, not a bare error")
                #expect(try await Appointment.find(id, on: app.db)?.status == AppointmentStatus.booked.rawValue)
            }
        }

        @Test func aPatientMovesAndCancelsTheirOwnBookingOnly() async throws {
            try await withDermis { app, settings in
                _ = try await FollowUp().signedSession(app, settings)
                let patient = try await signIn(app)
                let location = try #require(try await Location.query(on: app.db).first()).requireID().uuidString
                let (_, page, _) = try await get(app, "/my/book", headers: patient)
                let starts = page.components(separatedBy: "name=\"start\" value=\"").dropFirst().map { String($0.prefix(20)) }
                #expect(try await post(app, "/my/book", [("start", starts[0]), ("location", location)], headers: patient).0 == .seeOther)
                let zoeID = try await zoe(app).requireID()
                let booked = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == zoeID).first())
                let id = try booked.requireID()
                let (_, movePage, _) = try await get(app, "/my/appointments/\(id)/move", headers: patient)
                let later = movePage.components(separatedBy: "name=\"start\" value=\"").dropFirst().map { String($0.prefix(20)) }.first { $0 != starts[0] }
                #expect(try await post(app, "/my/appointments/\(id)/move", [("start", try #require(later))], headers: patient).0 == .seeOther)
                #expect(try await Appointment.find(id, on: app.db)?.startsAt == ISO8601DateFormatter().date(from: later!))
                #expect(try await post(app, "/my/appointments/\(id)/move", [("start", "tomorrow")], headers: patient).0 == .unprocessableEntity)
                // Another patient's booking cannot be touched from Zoë's pages.
                let other = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Álvarez").first())
                let desk = TestClient(app: app, headers: try await staffSignIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock))
                let theirs = try await desk.send(.POST, "/api/v1/appointments", ["location": location, "service": "consultation",
                                                                                "patient": other.requireID().uuidString, "start": starts.last!])
                let theirID = try #require(theirs.object["id"] as? String)
                #expect(try await post(app, "/my/appointments/\(theirID)/cancel", [], headers: patient).0 == .notFound)
                #expect(try await Appointment.find(UUID(uuidString: theirID)!, on: app.db)?.status == AppointmentStatus.booked.rawValue)
                #expect(try await post(app, "/my/appointments/\(id)/cancel", [], headers: patient).0 == .seeOther)
                #expect(try await Appointment.find(id, on: app.db)?.status == AppointmentStatus.cancelled.rawValue)
                // Cancelling it again says there is nothing left to change.
                let (again, againPage, _) = try await post(app, "/my/appointments/\(id)/cancel", [], headers: patient)
                #expect(again == .conflict && againPage.contains("no longer booked"))
            }
        }

        @Test func aftercareCheckInsAndSharedPhotosLiveInThePortalToo() async throws {
            try await withDermis { app, settings in
                let signed = try await FollowUp().signedSession(app, settings)
                let patient = try await signIn(app)
                let (_, home, _) = try await get(app, "/my", headers: patient)
                #expect(home.contains("/my/care/\(signed.chartID.uppercased())") || home.contains("/my/care/\(signed.chartID)"))
                let (care, carePage, _) = try await get(app, "/my/care/\(signed.chartID)", headers: patient)
                #expect(care == .ok && carePage.contains("action=\"/my/care/") && carePage.contains("id=\"back-to-my\""))
                let multipart = Multipart(fields: [("redness", "1"), ("pain", "2")])
                var headers = Multipart.headers()
                for (name, value) in patient where name.lowercased() == "cookie" { headers.add(name: name, value: value) }
                var checked = HTTPStatus.ok
                try await app.testing().test(.POST, "/my/care/\(signed.chartID)/check-ins", headers: headers, body: multipart.body) { checked = $0.status }
                #expect(checked == .created)
                #expect(try await CheckIn.query(on: app.db).count() == 1)
                // Another chart id is not the patient's aftercare.
                #expect(try await get(app, "/my/care/\(UUID())", headers: patient).0 == .notFound)
                // Photos: none shown until a practitioner shares one.
                let zoeID = try await zoe(app).requireID()
                let photo = Photo()
                photo.$patient.id = zoeID
                photo.zone = "cheeks"; photo.view = "front"; photo.takenOn = "2026-11-27"; photo.uploadedAt = testNow; photo.source = "clinic"
                photo.contentType = "image/jpeg"; photo.width = 1; photo.height = 1; photo.byteCount = 1; photo.sha256 = "x"; photo.storedName = "none"
                try await photo.create(on: app.db)
                let photoID = try photo.requireID()
                #expect(try await get(app, "/my/photos/\(photoID)", headers: patient).0 == .notFound)
                #expect(!(try await get(app, "/my/progress", headers: patient).1.contains(photoID.uuidString)))
                let practitioner = try await FollowUp().again(app, signed, settings)
                #expect(try await post(app, "/patients/\(zoeID)/photos/\(photoID)/share", [("shared", "yes")], headers: practitioner).0 == .unprocessableEntity)
                #expect(try await post(app, "/patients/\(zoeID)/photos/\(photoID)/share", [("shared", "1")], headers: practitioner).0 == .seeOther)
                #expect(try await get(app, "/my/progress", headers: patient).1.contains("/my/photos/\(photoID)"))
                #expect(try await get(app, "/my/progress", headers: patient).1.contains("1 of"))
            }
        }

        @Test func answersFromHomeClearNoSessionUntilAPractitionerReviewsThem() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let zoeID = try await zoe(app).requireID()
                let course = Course(app: app, session: try await staffSignIn(app, staff, clock: settings.clock), patientID: zoeID)
                // Cleared at the clinic, planned and consented: ready.
                try await course.ready()
                #expect(try await course.call(.GET, "/readiness").1["ready"] as? Bool == true)
                // Her own answers from home, a minute later and clear as well: they replace the clinic's, and clear nothing
                // until reviewed.
                settings.manualClock.advance(by: 60)
                let patient = try await signIn(app)
                let (saved, _, _) = try await post(app, "/my/intake", [("pregnant", "no"), ("nursing", "no"), ("fitzpatrickType", "3"), ("zone", "cheeks"),
                                                                         ("zone", "forehead")], headers: patient)
                #expect(saved == .created)
                let waiting = try await course.call(.GET, "/readiness").1
                #expect(waiting["ready"] as? Bool == false && waiting["cleared"] as? Bool == false)
                let (refused, _, refusedText) = try await course.start()
                #expect(refused == .conflict || refused == .unprocessableEntity, "\(refusedText)")
                #expect(refusedText.contains("reviews the answers"))
                let screening = try #require(try await ScreeningRecord.query(on: app.db).filter(\.$source == RecordSource.patientPortal).first())
                let page = "/patients/\(zoeID)/screenings/\(try screening.requireID())"
                #expect(try await get(app, page, headers: course.session).1.contains("id=\"review-answers\""))
                // Front desk may not review; the practitioner does, and the session can start.
                let desk = try await staffSignIn(app, try await makeStaff(app, role: .frontDesk), clock: settings.clock)
                #expect(try await post(app, page + "/review", [], headers: desk).0 == .forbidden)
                #expect(try await post(app, page + "/review", [], headers: course.session).0 == .seeOther)
                let reviewed = try #require(try await ScreeningRecord.find(screening.requireID(), on: app.db))
                #expect(reviewed.reviewedBy == staff.id && reviewed.reviewedAt != nil)
                #expect(try await course.call(.GET, "/readiness").1["ready"] as? Bool == true)
                #expect(try await get(app, page, headers: course.session).1.contains("Reviewed: by"))
            }
        }

        @Test func aStaffCookieBesideThePatientsNeverActsOnTheirPagesAndAContactChangeSignsThemOut() async throws {
            try await withDermis { app, settings in
                let desk = try await makeStaff(app, role: .frontDesk)
                let staff = try await staffSignIn(app, desk, clock: settings.clock)
                // A clinic tablet with a staff session open: the patient's sign-in is still the patient's alone.
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)], headers: staff)
                let token = try self.token(in: try #require(try await signInMessages(app).last))
                let (page, body, _) = try await get(app, "/my/link/\(token)", headers: staff)
                #expect(page == .ok && body.contains("This link signs in Zoë L."))
                let (used, _, headers) = try await post(app, "/my/link/\(token)", [], headers: staff)
                #expect(used == .seeOther)
                let zoeID = try await zoe(app).requireID()
                let rows = try await AuditEvent.query(on: app.db).filter(\.$objectType ~~ ["PortalSession", "PortalSignInLink"]).all()
                #expect(!rows.isEmpty && rows.allSatisfy { $0.actorEmail != desk.user.email && $0.actorID != desk.id })
                #expect(rows.first { $0.objectType == "PortalSession" }?.actorID == zoeID)
                // Her e-mail address changes: she is signed out, and a link sent to the old address no longer works.
                let cookie = try #require(headers[.setCookie].first { $0.hasPrefix("dermis_patient=") }?.components(separatedBy: ";").first)
                var patient = sameSite
                patient.add(name: .cookie, value: cookie)
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)])
                let unused = try self.token(in: try #require(try await signInMessages(app).last))
                let client = TestClient(app: app, headers: staff)
                let zoe = try await zoe(app)
                let changed = try await client.send(.PUT, "/api/v1/patients/\(zoeID)", [
                    "givenName": zoe.givenName, "familyName": zoe.familyName, "dateOfBirth": zoe.dateOfBirth, "phone": zoe.phoneE164 ?? "",
                    "email": "zoe.new@example.com"], ifMatch: zoe.version)
                #expect(changed.status == .ok, "\(changed.text)")
                #expect(try await get(app, "/my", headers: patient).0 == .seeOther)
                #expect(try await post(app, "/my/link/\(unused)", []).0 == .gone)
            }
        }

        @Test func manyRequestsAtOnceGetNoMoreLinksThanTheLimit() async throws {
            try await withDermis { app, settings in
                // 12 asks at once for one address (its limit is 3 an hour).
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<12 { group.addTask { _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)]) } }
                    try await group.waitForAll()
                }
                // Never more than the limit: each request counts its own attempt with every one committed before it. (Under a
                // burst some may count more than came before them, so fewer may pass; one at a time, exactly the limit do.)
                let sent = try await signInMessages(app).count
                #expect(sent <= PortalSessions.linksPerAddressPerHour, "\(sent) links went out")
                // And it is a limit, not a wall: an hour later, one at a time, links go out again.
                settings.manualClock.advance(by: 3601)
                _ = try await post(app, "/my/sign-in", [("address", Self.zoeEmail)])
                #expect(try await signInMessages(app).count == sent + 1)
            }
        }

        // MARK: The catalogue

        @Test func everySentenceTheTemplatesUseIsInTheCatalogueAndATranslationKeepsItsPlaceholders() async throws {
            let catalogue = try PatientText.load(overrides: nil)
            let views = resourcesPath("Views")
            // The patient's pages, and the aftercare pages their personal link opens.
            for file in try FileManager.default.contentsOfDirectory(atPath: views) where file.hasPrefix("my-") || file.hasPrefix("care") {
                let text = try String(contentsOfFile: views + file, encoding: .utf8)
                let used = text.matches(of: /[(.]t\.([A-Za-z0-9_]+)/).map { String($0.1) }
                #expect(!used.isEmpty, "\(file) uses no catalogue sentence")
                for key in used { #expect(catalogue.templateKeys[key] != nil, "\(file): my.t.\(key)") }
                for key in used { #expect(PatientText.placeholders(catalogue.templateKeys[key] ?? "").isEmpty, "\(file): \(key) has placeholders the template cannot fill") }
            }
            for code in Vocabulary.conditions + Vocabulary.medications + Vocabulary.allergies + Vocabulary.procedures {
                #expect(catalogue.strings["vocabulary.\(code)"] != nil, "\(code)")
            }
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-text-\(UUID())")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            func translation(_ json: String) throws -> PatientText {
                let path = folder.appendingPathComponent("t.json").path
                try json.write(toFile: path, atomically: true, encoding: .utf8)
                return try PatientText.load(overrides: path)
            }
            let french = try translation(#"{"home.greeting": "Bonjour {name}"}"#)
            #expect(french("home.greeting", ["name": "Zoë"]) == "Bonjour Zoë" && french("home.title") == catalogue("home.title"))
            #expect(throws: PatientText.Problem.self) { try translation(#"{"home.greeting": "Bonjour"}"#) }
            #expect(throws: PatientText.Problem.self) { try translation(#"{"home.greting": "Bonjour {name}"}"#) }
            #expect(throws: PatientText.Problem.self) { try translation(#"["not", "an", "object"]"#) }
        }
    }
}

/// The staff sign-in (the suite's own `signIn` is the patient's).
private func staffSignIn(_ app: Application, _ staff: TestStaff, clock: any Clock) async throws -> HTTPHeaders {
    try await signIn(app, staff, clock: clock)
}
