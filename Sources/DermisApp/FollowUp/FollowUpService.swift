import DermisCore
import Fluent
import Foundation
import Vapor

/// After the session: the aftercare a signed chart issues, the patient's personal link, check-ins and the adverse
/// events their flags open. Shared by the staff pages, the patient's link and the API.
struct FollowUpService {
    let req: Request

    var db: any Database { req.db }
    var p: ClinicalProtocol { req.dermis.clinicalProtocol }
    var now: Date { req.dermis.clock.now() }

    // MARK: Aftercare

    /// The aftercare of a signed chart version from what was charted: issued at signing, and again after an amendment
    /// that changes the deepest depth. The first signing stays the clock's origin.
    @discardableResult
    func issueAftercare(for session: TreatmentSession, by staffID: UUID) async throws -> AftercarePlan? {
        guard session.isSigned, let deepest = session.zones.map(\.depthMm).max() else { return nil }
        let latest = try await latestAftercare(of: session.chartID)
        let origin = try latest?.schedule.sessionEnd ?? session.signedAt ?? now
        let schedule = AftercareSchedule.issue(sessionEnd: origin, deepestDepthMm: deepest, protocol: p)
        if let latest, try latest.schedule == schedule { return latest }
        let plan = AftercarePlan()
        plan.chartID = session.chartID
        plan.version = (latest?.version ?? 0) + 1
        plan.$patient.id = session.$patient.id
        plan.scheduleJSON = String(decoding: try JSONEncoder().encode(schedule), as: UTF8.self)
        plan.issuedAt = now
        plan.issuedBy = staffID
        do {
            try await Writes.savepoint(db) { db in try await plan.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            return try await latestAftercare(of: session.chartID)
        }
        return plan
    }

    func latestAftercare(of chartID: UUID) async throws -> AftercarePlan? {
        try await AftercarePlan.query(on: db).filter(\.$chartID == chartID).sort(\.$version, .descending).first()
    }

    // MARK: Links

    /// A new personal link for a signed session (256 random bits, base64url); any earlier link for it is revoked.
    /// It lasts the protocol's follow-up window from the session's end. The token is returned once and never stored.
    func createLink(chartID: UUID, patientID: UUID, by staffID: UUID) async throws -> (link: PatientLink, token: String) {
        guard let aftercare = try await latestAftercare(of: chartID) else {
            throw DomainError.conflict("Sign the chart first: the link shows the aftercare a signed session issues.")
        }
        let expires = try aftercare.schedule.sessionEnd.addingTimeInterval(Double(p.followUp.linkValidDays) * 86_400)
        guard expires > now else {
            throw DomainError.conflict("The \(p.followUp.linkValidDays)-day follow-up window of this session has ended; no new link can be issued.")
        }
        let token = Secrets.token()
        let link = PatientLink()
        link.tokenHash = Secrets.digest(token)
        link.tokenSealed = try req.dermis.secretBox.seal(token)
        link.chartID = chartID
        link.$patient.id = patientID
        link.createdAt = now
        link.createdBy = staffID
        link.expiresAt = expires
        // Withdrawing the old link and issuing the new one are one unit of work: never two live links, never none.
        try await Writes.transaction(db) { db in
            try await revokeLinks(chartID: chartID, by: staffID)
            try await link.create(on: db)
        }
        return (link, token)
    }

    /// Sends the patient their personal link by their channel (the link, never the record); returns whether a message
    /// was queued. In the caller's unit of work.
    @discardableResult
    func mailLink(_ token: String, link: PatientLink, to patient: Patient) async throws -> Bool {
        guard let route = try await MessageRoute.to(patient: patient.id, email: patient.email, phone: patient.phoneE164, on: db) else { return false }
        let clinic = try await Clinic.require(patient.$clinic.id, on: db)
        let values = ["name": patient.givenName, "clinic": clinic.name, "link": FollowUpController.url(req, token: token),
                      "until": CalendarDate(link.expiresAt, in: clinic.zone).description]
        try await RenderedMessage.render(.aftercareLink, values, clinic: try clinic.requireID(), on: db)
            .queue(by: route, clinic: try clinic.requireID(), patient: patient.id, at: now, about: link.chartID, on: db)
        return true
    }

    func revokeLinks(chartID: UUID, by staffID: UUID) async throws {
        try await PatientLink.query(on: db).filter(\.$chartID == chartID).filter(\.$revokedAt == nil)
            .set(\.$revokedAt, to: now).set(\.$revokedBy, to: staffID).update()
        // Invitations still waiting carry the withdrawn link: they are not sent, and say why (a new link's invitations are
        // written afresh from its own token).
        try await OutboxMessage.query(on: db).filter(\.$subjectID == chartID)
            .filter(\.$kind ~~ [MessageKind.checkIn, .checkInOverdue, .rateResult].map(\.rawValue))
            .filter(\.$status ~~ [OutboxStatus.queued.rawValue, OutboxStatus.retry.rawValue])
            .set(\.$status, to: OutboxStatus.dead.rawValue).set(\.$lastError, to: "not sent: the link it carries was withdrawn").update()
    }

    func activeLink(chartID: UUID) async throws -> PatientLink? {
        try await PatientLink.query(on: db).filter(\.$chartID == chartID).filter(\.$revokedAt == nil)
            .filter(\.$expiresAt > now).sort(\.$createdAt, .descending).first()
    }

    // MARK: Check-ins

    struct CheckInOutcome {
        let checkIn: CheckIn
        let flags: [CheckInFlag]
        let openedEvents: [AdverseEvent]
    }

    /// Stores a patient's report with the flags the rules raise, and opens an adverse event for each flag
    /// (unless one of that type is already open for the session, which the check-in then joins).
    func checkIn(_ report: CheckInReport, through link: PatientLink, photoID: UUID?) async throws -> CheckInOutcome {
        let issues = report.issues(protocol: p)
        if !issues.isEmpty { throw InvalidInput(issues) }
        guard let aftercare = try await latestAftercare(of: link.chartID) else { throw DomainError.notFound("No such follow-up.") }
        let schedule = try aftercare.schedule
        let clinic = try await req.clinic()
        let zone = clinic?.zone ?? .current
        let at = now
        let earlier = try await CheckIn.query(on: db).filter(\.$chartID == link.chartID).all().map { (pain: $0.pain, at: $0.submittedAt) }
        let flags = CheckInRules.flags(for: report, at: at, schedule: schedule, previous: earlier, zone: zone, protocol: p)
        let checkIn = CheckIn()
        checkIn.$link.id = try link.requireID()
        checkIn.chartID = link.chartID
        checkIn.$patient.id = link.$patient.id
        checkIn.submittedAt = at
        checkIn.day = schedule.day(of: at, in: zone)
        checkIn.redness = report.redness
        checkIn.pain = report.pain
        checkIn.swelling = report.swelling
        checkIn.itching = report.itching
        checkIn.infectionSigns = report.infectionSigns.joined(separator: ",")
        checkIn.notes = report.notes
        checkIn.photoID = photoID
        checkIn.flagsJSON = String(decoding: try JSONEncoder().encode(flags), as: UTF8.self)
        guard let clinicID = try await Patient.find(link.$patient.id, on: db)?.$clinic.id else { throw DomainError.notFound("No such follow-up.") }
        let opened = try await Writes.transaction(db) { tx -> [AdverseEvent] in
            var opened: [AdverseEvent] = []
            try await checkIn.create(on: tx)
            for flag in flags {
                let alreadyOpen = try await AdverseEvent.query(on: tx).filter(\.$chartID == link.chartID)
                    .filter(\.$type == flag.eventType).filter(\.$resolvedOn == nil).first()
                if alreadyOpen != nil { continue }
                let event = AdverseEvent()
                event.$clinic.id = clinicID
                event.$patient.id = link.$patient.id
                event.chartID = link.chartID
                event.$checkIn.id = try checkIn.requireID()
                event.type = flag.eventType
                event.severity = flag.severity
                event.onset = CalendarDate(at, in: zone).description
                event.details = "\(flag.message) Rule: \(flag.rule) — \(flag.source)"
                event.actions = ""
                event.outcome = "ongoing"
                event.openedByKind = "check-in-rule"
                event.openedAt = at
                event.version = 1
                event.updatedAt = at
                try await event.create(on: tx)
                opened.append(event)
                try await alertPractitioner(of: link.chartID, about: event, on: tx)
            }
            return opened
        }
        return CheckInOutcome(checkIn: checkIn, flags: flags, openedEvents: opened)
    }

    /// Tells the treating practitioner by e-mail that a check-in opened an adverse event: its severity and where to see
    /// it, nothing about the patient (e-mail is not the record). The link is built only from `DERMIS_PUBLIC_URL`: this
    /// runs on a patient's request, whose Host header is theirs to choose.
    private func alertPractitioner(of chartID: UUID, about event: AdverseEvent, on db: any Database) async throws {
        guard let session = try await TreatmentSession.query(on: db).filter(\.$chartID == chartID).first(),
              let practitioner = try await StaffUser.find(session.practitionerID, on: db), practitioner.active,
              MailMessage.isDeliverable(practitioner.email) else { return }
        let place = req.dermis.settings.publicURL.map { "\($0)/adverse-events/\(event.id?.uuidString ?? "")" } ?? "Adverse events in Dermis"
        let message = OutboxMessage(
            clinicID: event.$clinic.id, recipient: practitioner.email, subject: "Adverse event opened by a check-in (\(event.severity))",
            body: """
                Hello \(practitioner.name),

                A patient's check-in after a session you charted opened a \(event.severity) adverse event for you to review:
                \(place)
                """,
            kind: "adverse-event-alert", at: now, about: event.id)
        try await message.create(on: db)
    }

    /// The patient's GAIS rating from the link's form: none when left empty; checked against the scale.
    static func patientRating(_ text: String?, protocol p: ClinicalProtocol) throws -> Int? {
        guard let text, !text.isEmpty else { return nil }
        guard let value = Int(text), let scale = p.outcomeScale("gais"), scale.raters.contains("patient"), (scale.min...scale.max).contains(value) else {
            throw InvalidInput(path: "gais", problem: "choose one of the listed ratings")
        }
        return value
    }

    /// The patient's own GAIS rating of the session, from their link (replaces an earlier one).
    func ratePatientGAIS(_ value: Int, through link: PatientLink) async throws {
        try await replaceScores([("gais", "patient", value)], chartID: link.chartID, patientID: link.$patient.id, by: nil)
    }

    /// Stores scores for a session, each replacing that scale and rater's earlier score, in one transaction.
    func replaceScores(_ scores: [(scale: String, rater: String, value: Int)], chartID: UUID, patientID: UUID, by staffID: UUID?) async throws {
        let at = now
        let rows = scores.map { score in
            let row = OutcomeScore()
            row.$patient.id = patientID
            row.chartID = chartID
            row.scale = score.scale
            row.rater = score.rater
            row.value = score.value
            row.recordedAt = at
            row.recordedBy = staffID
            return row
        }
        try await Writes.transaction(db) { tx in
            for row in rows {
                try await OutcomeScore.query(on: tx).filter(\.$chartID == chartID).filter(\.$scale == row.scale)
                    .filter(\.$rater == row.rater).delete()
                try await row.create(on: tx)
            }
            try await ReportFacts.refreshSeries(of: patientID, on: tx)
        }
    }
}

/// The gate of every `.patientLink` route: rate limits, then the token. Unknown tokens count against the address.
enum PatientLinks {
    /// Wrong links an address may try in an hour before it is refused for the rest of it.
    static let missesPerAddressPerHour = 20
    /// Requests one link may make in an hour.
    static let requestsPerLinkPerHour = 300

    /// Unknown tokens one client address has tried this hour, of any kind of patient link (aftercare or sign-in): one
    /// guessing budget per address.
    static func tooManyMisses(_ req: Request) async throws -> Bool {
        try await RateLimits.count(missBucket(req), window: 3600, now: req.dermis.clock.now(), on: req.db) >= missesPerAddressPerHour
    }

    static func recordMiss(_ req: Request) async throws {
        try await RateLimits.record(missBucket(req), now: req.dermis.clock.now(), on: req.db)
    }

    private static func missBucket(_ req: Request) -> String { "link-miss:\(req.clientAddress)" }

    /// Nil when the request may go on (the link is then `req.patientLink`), else the refusal to send.
    static func authorize(_ req: Request) async throws -> Response? {
        let now = req.dermis.clock.now()
        if try await tooManyMisses(req) {
            req.logger.warning("Patient-link lookups refused: too many unknown links from one address")
            return try await refusal(req, .tooManyRequests, req.dermis.patientText("links.tooMany"))
        }
        let token = req.parameters.get("token") ?? ""
        guard (20...100).contains(token.count),
              let link = try await PatientLink.query(on: req.db).filter(\.$tokenHash == Secrets.digest(token)).first() else {
            try await recordMiss(req)
            return try await refusal(req, .notFound, req.dermis.patientText("care.link.unknown"))
        }
        if link.revokedAt != nil {
            return try await refusal(req, .gone, req.dermis.patientText("care.link.revoked"))
        }
        if now >= link.expiresAt {
            return try await refusal(req, .gone, req.dermis.patientText("care.link.expired"))
        }
        if try await RateLimits.exceeded("link:\(try link.requireID())", limit: requestsPerLinkPerHour, window: 3600, now: now, on: req.db) {
            return try await refusal(req, .tooManyRequests, req.dermis.patientText("care.link.busy"))
        }
        req.patientLink = link
        req.auditClinicID = try await Patient.find(link.$patient.id, on: req.db)?.$clinic.id
        return nil
    }

    private static func refusal(_ req: Request, _ status: HTTPResponseStatus, _ message: String) async throws -> Response {
        struct Refusal: Encodable {
            let clinicName: String
            let message: String
            let t: [String: String]
        }
        try await req.audit(.access, objectType: "PatientLink", outcome: AuditOutcome(Abort(status)))
        let clinic = try await req.clinic()
        return try await req.view.render("care-refused", Refusal(clinicName: clinic?.name ?? req.dermis.patientText("clinic.fallback"), message: message,
                                                                 t: req.dermis.patientText.templateKeys))
            .response(status, for: req)
    }
}

extension Request {
    private struct LinkKey: StorageKey { typealias Value = PatientLink }

    /// The patient link a `.patientLink` route was opened with.
    var patientLink: PatientLink? {
        get { storage[LinkKey.self] }
        set { storage[LinkKey.self] = newValue }
    }
}
