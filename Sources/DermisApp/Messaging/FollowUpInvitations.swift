import DermisCore
import Fluent
import Foundation
import Vapor

/// The messages that follow a signed session, written by the outbox worker when their time comes (the protocol's
/// `followUp.invitations`): a check-in invitation on each of its days, a reminder when one went unanswered, and — after
/// the last session of a series — an invitation to rate the result (GAIS) on the patient's page. Each carries the
/// patient's own link (its token kept sealed with the server's key), goes by the patient's channel, and is written once
/// per link and day whichever server gets there first. A link issued after an invitation's time, revoked or expired gets
/// none; an invitation more than a day late (the server was down) is not sent at all.
enum FollowUpInvitations {
    struct Due {
        let link: PatientLink
        let kind: MessageKind
        let day: Int
        let at: Date
        let id: UUID
    }

    static func id(_ link: UUID, _ what: String) -> UUID { AppointmentNotices.stableID("\(link.uuidString)/\(what)") }

    /// Writes what is due now; returns how many messages were written.
    @discardableResult
    static func schedule(app: Application, now: Date) async throws -> Int {
        let p = app.dermis.clinicalProtocol
        guard let invitations = p.followUp.invitations, let base = app.dermis.settings.publicURL else { return 0 }
        let db = app.db
        let links = try await PatientLink.query(on: db).filter(\.$revokedAt == nil).filter(\.$expiresAt > now).filter(\.$tokenSealed != nil).all()
        guard !links.isEmpty else { return 0 }
        let patients = try await Patient.query(on: db).filter(\.$id ~~ Set(links.map { $0.$patient.id })).all()
        let byID = Dictionary(patients.compactMap { patient in patient.id.map { ($0, patient) } }, uniquingKeysWith: { first, _ in first })
        let clinics = try await Clinic.query(on: db).filter(\.$id ~~ Set(patients.map { $0.$clinic.id })).all()
        let zones = Dictionary(clinics.compactMap { clinic in clinic.id.map { ($0, clinic.zone) } }, uniquingKeysWith: { first, _ in first })

        var due: [Due] = []
        var overdue: [Due] = []
        var rating: [Due] = []
        for link in links {
            guard let patient = byID[link.$patient.id], let zone = zones[patient.$clinic.id], let linkID = link.id else { continue }
            // The link lasts linkValidDays from the session's end: the session's day is where the days count from.
            let sessionEnd = link.expiresAt.addingTimeInterval(-Double(p.followUp.linkValidDays) * 86_400)
            func time(_ day: Int) -> Date {
                var calendar = Calendar(identifier: .gregorian)
                calendar.timeZone = zone
                let date = calendar.date(byAdding: .day, value: day, to: calendar.startOfDay(for: sessionEnd)) ?? sessionEnd
                // An hour a clock change skips is the next one that exists.
                return calendar.date(bySettingHour: invitations.localHour, minute: 0, second: 0, of: date)
                    ?? calendar.nextDate(after: date, matching: DateComponents(hour: invitations.localHour), matchingPolicy: .nextTime) ?? date
            }
            func isDue(_ at: Date, since asked: Date) -> Bool { at <= now && now < at.addingTimeInterval(86_400) && link.createdAt < asked }
            for day in invitations.checkInDays {
                let asked = time(day)
                if isDue(asked, since: asked) { due.append(Due(link: link, kind: .checkIn, day: day, at: asked, id: id(linkID, "check-in-\(day)"))) }
                let late = time(day + invitations.overdueAfterDays)
                if isDue(late, since: asked) {
                    overdue.append(Due(link: link, kind: .checkInOverdue, day: day, at: asked, id: id(linkID, "check-in-overdue-\(day)")))
                }
            }
            let rate = time(invitations.rateResultDay)
            if isDue(rate, since: rate) { rating.append(Due(link: link, kind: .rateResult, day: invitations.rateResultDay, at: rate, id: id(linkID, "rate-result"))) }
        }
        // A reminder only when nothing came in since the invitation it follows up.
        if !overdue.isEmpty {
            let checkIns = try await CheckIn.query(on: db).filter(\.$chartID ~~ Set(overdue.map(\.link.chartID)))
                .filter(\.$submittedAt >= overdue.map(\.at).min()!).all()
            overdue.removeAll { reminder in checkIns.contains { $0.chartID == reminder.link.chartID && $0.submittedAt >= reminder.at } }
            due += overdue
        }
        due += rating
        guard !due.isEmpty else { return 0 }
        let written = Set(try await OutboxMessage.query(on: db).filter(\.$id ~~ due.map(\.id)).all().compactMap(\.id))
        var count = 0
        for invitation in due where !written.contains(invitation.id) {
            guard let patient = byID[invitation.link.$patient.id], let sealed = invitation.link.tokenSealed else { continue }
            // Whether the series ended is asked only of a rating not yet written (a day's window, not every minute's pass).
            if invitation.kind == .rateResult, try await !endsItsSeries(chartID: invitation.link.chartID, on: db) { continue }
            // A token that no longer opens (the key was replaced) costs that one invitation, not the pass.
            guard let token = try? app.dermis.secretBox.open(sealed) else {
                app.logger.warning("A follow-up invitation was not written: its link's token does not open with this server's key",
                                   metadata: ["link": "\(invitation.link.id?.uuidString ?? "")"])
                continue
            }
            do {
                try await Writes.transaction(db) { tx in
                    guard let route = try await MessageRoute.to(patient: patient.id, email: patient.email, phone: patient.phoneE164, on: tx) else { return }
                    let clinic = try await Clinic.require(patient.$clinic.id, on: tx)
                    let clinicID = try clinic.requireID()
                    let values = ["name": patient.givenName, "clinic": clinic.name, "link": base + "/care/\(token)", "day": "\(invitation.day)"]
                    let quiet = try await MessagingRules.load(clinic: clinicID, on: tx).quiet.end(after: now, in: clinic.zone)
                    try await RenderedMessage.render(invitation.kind, values, clinic: clinicID, on: tx)
                        .queue(by: route, clinic: clinicID, patient: patient.id, at: now, notBefore: quiet, about: invitation.link.chartID,
                               id: invitation.id, on: tx)
                    count += 1
                }
            } catch let error as any DatabaseError where error.isConstraintFailure {
                continue  // another server wrote it first
            }
        }
        return count
    }

    /// Whether the session is the last of its plan's series: the plan it was charted under has as many signed sessions
    /// as its series, and this is the latest of them. Sessions under another plan (an earlier course, a new version)
    /// do not count: when in doubt, no invitation rather than one too early.
    static func endsItsSeries(chartID: UUID, on db: any Database) async throws -> Bool {
        guard let session = try await TreatmentSession.query(on: db).filter(\.$chartID == chartID).sort(\.$version, .descending).first(),
              let plan = try await TreatmentPlanRecord.find(session.$plan.id, on: db) else { return false }
        let signed = try await TreatmentSession.query(on: db).filter(\.$plan.$id == session.$plan.id).filter(\.$status == "signed").all()
        let charts = Set(signed.map(\.chartID))
        let latest = signed.max { ($0.signedAt ?? .distantPast) < ($1.signedAt ?? .distantPast) }?.chartID
        return charts.count >= (try plan.plan.series.sessions) && latest == chartID
    }
}
