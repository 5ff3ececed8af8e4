import DermisCore
import Fluent
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Vapor

/// Where a message is on its way out.
enum OutboxStatus: String, Sendable, CaseIterable {
    case queued, sending, retry, sent, dead
}

/// Delivery state on the outbox's messages.
struct MessageDelivery: AsyncMigration {
    static let fields: [(String, DatabaseSchema.DataType)] = [
        ("kind", .string), ("attempts", .int), ("not_before", .datetime), ("claimed_until", .datetime), ("sent_at", .datetime),
        ("last_error", .string), ("calendar", .string), ("subject_id", .uuid),
    ]

    func prepare(on database: any Database) async throws {
        // One column per ALTER TABLE: SQLite takes no more.
        for (name, type) in Self.fields { try await database.schema(OutboxMessage.schema).field(.string(name), type).update() }
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX message_due ON message (status, not_before)").run()
        try await sql.raw("CREATE INDEX message_subject ON message (subject_id, kind)").run()
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("DROP INDEX message_due").run()
        try await sql.raw("DROP INDEX message_subject").run()
        for (name, _) in Self.fields { try await database.schema(OutboxMessage.schema).deleteField(.string(name)).update() }
    }
}

/// Sends what is due from the outbox: claims a batch (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so several servers never
/// take the same message; on SQLite under the write lock), sends each outside any transaction, then marks it sent — or
/// retries it with backoff, or after `maxAttempts` (or a permanent refusal) marks it dead with the server's answer.
///
/// A crash between sending and marking leaves the message `sending` with a claim that lapses after `lease`; another
/// pass then sends it again with the same Message-ID (`<id@dermis>`), so the repeat is recognisably the same mail and
/// mail clients show it once. Delivery is at least once, never silently lost.
struct OutboxWorker: Sendable {
    let app: Application
    /// E-mail, when configured.
    let transport: (any MailTransport)?
    let from: String
    /// Text messages, when configured.
    let sms: (any SMSTransport)?
    /// When the follow-up invitations were last looked for: once a minute is soon enough for a message due on a day.
    private let lastInvitationPass = NIOLockedValueBox<Date?>(nil)

    init(app: Application, transport: (any MailTransport)?, from: String, sms: (any SMSTransport)? = nil) {
        self.app = app
        self.transport = transport
        self.from = from
        self.sms = sms
    }

    /// A claim outlasts the batch it covers: `batch` messages at the longest a send may take (SMTP's 60-second
    /// deadline) is 5 minutes, well inside it, so no other server takes over a message still being sent.
    static let lease: TimeInterval = 10 * 60
    static let batch = 5
    static let maxAttempts = 6

    /// 1, 2, 4, 8, 16 minutes… after the nth failed attempt, at most an hour.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(3600, 60 * pow(2, Double(max(0, attempt - 1))))
    }

    static func messageID(_ id: UUID) -> String { "<\(id.uuidString.lowercased())@dermis>" }

    /// One pass: writes the reminders now due, claims up to `limit` due messages and sends them; returns how many were
    /// tried.
    @discardableResult
    func runOnce(limit: Int = batch) async throws -> Int {
        let now = app.dermis.clock.now()
        _ = try await AppointmentNotices.scheduleReminders(on: app.db, now: now)
        let invitationsDue = lastInvitationPass.withLockedValue { last in
            guard last.map({ now.timeIntervalSince($0) >= 60 || now < $0 }) ?? true else { return false }
            last = now
            return true
        }
        if invitationsDue { try await FollowUpInvitations.schedule(app: app, now: now) }
        let claimed = try await claim(limit: limit)
        for (index, message) in claimed.enumerated() {
            // Stopping (SIGTERM) takes effect between messages: the rest of the batch goes back to the queue at once.
            if Task.isCancelled {
                try await release(Array(claimed[index...]))
                return index
            }
            // A message being sent is finished, not cut off, when the server stops: its own task is not cancelled.
            try await Task { try await self.deliver(message) }.value
        }
        return claimed.count
    }

    /// Hands claimed messages back untried: their lease ends now and the attempt is not counted.
    private func release(_ messages: [OutboxMessage]) async throws {
        let now = app.dermis.clock.now()
        try await Writes.transaction(app.db) { db in
            for message in messages {
                try await OutboxMessage.query(on: db).filter(\.$id == message.requireID())
                    .filter(\.$status == OutboxStatus.sending.rawValue)
                    .set(\.$claimedUntil, to: now).set(\.$attempts, to: max(0, (message.attempts ?? 1) - 1)).update()
            }
        }
    }

    private func claim(limit: Int) async throws -> [OutboxMessage] {
        let now = app.dermis.clock.now()
        return try await Writes.transaction(app.db) { db in
            guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
            let lock = sql.dialect.name == "postgresql" ? " FOR UPDATE SKIP LOCKED" : ""
            // Only the channels this worker can send; the others wait, and the outbox page says why.
            let channels = switch (transport != nil, sms != nil) {
            case (true, true): ""
            case (true, false): "AND COALESCE(channel, 'email') <> 'sms'"
            case (false, _): "AND channel = 'sms'"
            }
            let rows = try await sql.raw("""
                SELECT id FROM message
                WHERE ((status IN ('queued', 'retry') AND COALESCE(not_before, created_at) <= \(bind: now))
                   OR (status = 'sending' AND claimed_until <= \(bind: now))) \(unsafeRaw: channels)
                ORDER BY created_at LIMIT \(literal: limit)\(unsafeRaw: lock)
                """).all()
            let ids = try rows.map { try $0.decode(column: "id", as: UUID.self) }
            guard !ids.isEmpty else { return [] }
            // In the order they were written: a patient hears "booked" before "moved".
            let messages = try await OutboxMessage.query(on: db).filter(\.$id ~~ ids).sort(\.$createdAt).sort(\.$id).all()
            for message in messages {
                message.status = OutboxStatus.sending.rawValue
                message.claimedUntil = now.addingTimeInterval(Self.lease)
                message.attempts = (message.attempts ?? 0) + 1
                try await message.save(on: db)
            }
            return messages
        }
    }

    private func deliver(_ message: OutboxMessage) async throws {
        var failure: MailError?
        do {
            failure = try await refusal(message)
            if failure == nil {
                if message.isSMS {
                    guard let sms else { throw MailError(permanent: false, message: MailSetup.noSMS) }
                    try await sms.send(to: message.recipient, body: message.body)
                } else {
                    guard let transport else { throw MailError(permanent: false, message: MailSetup.notConfigured) }
                    try await transport.send(mail(message))
                }
            }
        } catch let error as MailError {
            failure = error
        } catch {
            failure = MailError(permanent: false, message: "\(error)")
        }
        try await mark(message, failure: failure)
    }

    /// Why a patient's message must not go now that it is due: they chose no messages, stopped e-mail, or replied STOP.
    private func refusal(_ message: OutboxMessage) async throws -> MailError? {
        guard let patientID = message.patientID else { return nil }
        let preference = try await MessagePreference.find(patientID, on: app.db)
        if preference?.preferred == MessagePreference.Channel.none {
            return MailError(permanent: true, message: "not sent: the patient chose no messages (since \(AuditLog.isoDay(preference!.updatedAt)))")
        }
        if let kind = message.kind.flatMap(MessageKind.init(rawValue:)), [.checkIn, .checkInOverdue, .rateResult].contains(kind) {
            let live = try await PatientLink.query(on: app.db).filter(\.$chartID == (message.subjectID ?? UUID())).filter(\.$revokedAt == nil)
                .filter(\.$expiresAt > app.dermis.clock.now()).first()
            if live == nil { return MailError(permanent: true, message: "not sent: the patient's link it carries was revoked or has expired") }
        }
        if message.isSMS {
            if let stopped = preference?.smsStoppedAt {
                return MailError(permanent: true, message: "not sent: the patient replied STOP to a text on \(AuditLog.isoDay(stopped))")
            }
            if preference?.smsConsentAt == nil { return MailError(permanent: true, message: "not sent: the patient's consent to texts was withdrawn") }
        } else if let optOut = try await MessageOptOut.find(patientID, on: app.db) {
            return MailError(permanent: true, message: "not sent: the patient stopped e-mail from the clinic on "
                             + "\(AuditLog.isoDay(optOut.at)) (\(optOut.how == "one-click" ? "their mail program's unsubscribe" : "the unsubscribe link"))")
        }
        return nil
    }

    /// The e-mail for a message: a patient's carries their unsubscribe link.
    private func mail(_ message: OutboxMessage) throws -> MailMessage {
        let unsubscribe = message.patientID.flatMap { patientID in
            app.dermis.settings.publicURL.map { $0 + UnsubscribeController.path(for: patientID, on: app) }
        }
        return MailMessage(from: from, to: message.recipient, subject: message.subject, text: message.body,
                           html: Self.html(message.body), calendar: message.calendar, messageID: Self.messageID(try message.requireID()),
                           date: app.dermis.clock.now(), unsubscribe: unsubscribe)
    }

    private func mark(_ message: OutboxMessage, failure: MailError?) async throws {
        let id = try message.requireID()
        let now = app.dermis.clock.now()
        let attempts = message.attempts ?? 1
        try await Writes.transaction(app.db) { db in
            // Only while it is still being sent: a message already marked (by a worker that took over a lapsed claim) stays as
            // it is.
            let update = OutboxMessage.query(on: db).filter(\.$id == id).filter(\.$status == OutboxStatus.sending.rawValue)
            if let failure {
                let dead = failure.permanent || attempts >= Self.maxAttempts
                try await update.set(\.$status, to: (dead ? OutboxStatus.dead : OutboxStatus.retry).rawValue)
                    .set(\.$lastError, to: String(failure.message.prefix(1000)))
                    .set(\.$notBefore, to: dead ? nil : now.addingTimeInterval(Self.backoff(afterAttempt: attempts)))
                    .set(\.$claimedUntil, to: nil).update()
            } else {
                try await update.set(\.$status, to: OutboxStatus.sent.rawValue).set(\.$sentAt, to: now)
                    .set(\.$lastError, to: nil).set(\.$claimedUntil, to: nil).update()
            }
        }
        if let failure { app.metrics.outboxFailed(dead: failure.permanent || attempts >= Self.maxAttempts) }
        if let failure {
            // The log names the message, never its recipient or text (no patient data in logs).
            app.logger.warning("Message not sent (attempt \(attempts)): \(failure.permanent ? "refused" : "will retry")", metadata: ["message": "\(id)"])
        }
    }

    /// The text as minimal HTML: escaped, with its links made clickable.
    static func html(_ text: String) -> String {
        let escaped = text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        let linked = escaped.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.split(separator: " ", omittingEmptySubsequences: false).map { word -> String in
                word.hasPrefix("https://") || word.hasPrefix("http://") ? "<a href=\"\(word)\">\(word)</a>" : String(word)
            }.joined(separator: " ")
        }
        return "<!doctype html><html><body><p>" + linked.joined(separator: "<br>\n") + "</p></body></html>"
    }

    /// Runs passes until cancelled: every `interval` seconds, and at once again while there was work. Cancelling it
    /// lets the message being sent finish and hands the rest of its batch back.
    func loop(interval: Duration = .seconds(2)) async {
        while !Task.isCancelled {
            var tried = 0
            do { tried = try await runOnce() } catch {
                app.logger.error("The outbox pass failed: \(String(reflecting: type(of: error)))")
            }
            if tried == 0 { try? await Task.sleep(for: interval) }
        }
    }
}

extension Application {
    private struct MailKey: StorageKey { typealias Value = MailSetup }

    /// The configured e-mail transport, or why there is none.
    var mail: MailSetup {
        get { storage[MailKey.self] ?? MailSetup(worker: nil, problems: [MailSetup.notConfigured]) }
        set { storage[MailKey.self] = newValue }
    }
}

/// The outbox worker when a transport is configured, and what is missing, shown on the outbox page.
struct MailSetup: Sendable {
    let worker: OutboxWorker?
    let problems: [String]
    /// The SMS provider, also for its inbound webhook.
    let sms: (any SMSTransport)?

    init(worker: OutboxWorker?, problems: [String], sms: (any SMSTransport)? = nil) {
        self.worker = worker
        self.problems = problems
        self.sms = sms
    }

    var problem: String? { problems.isEmpty ? nil : problems.joined(separator: "; ") }

    static let notConfigured = "no e-mail transport is configured (DERMIS_SMTP_URL): e-mail waits here to be copied"
    static let noSMS = "no SMS provider is configured (DERMIS_SMS_URL): text messages wait here to be copied"
    static let noPublicURL = "DERMIS_PUBLIC_URL is not set: e-mail carries no unsubscribe link, and no check-in invitations are written"

    static func configure(_ app: Application, settings: DermisSettings) throws -> MailSetup {
        var problems: [String] = []
        var mail: SMTPTransport?
        var from = ""
        if let url = settings.smtpURL {
            let smtp = try SMTPSettings.parse(url: url, from: settings.mailFrom, caFile: settings.smtpCAFile)
            mail = SMTPTransport(settings: smtp, group: app.eventLoopGroup)
            from = smtp.from
        } else {
            problems.append(notConfigured)
        }
        var sms: TwilioMessages?
        if let url = settings.smsURL {
            sms = TwilioMessages(settings: try SMSSettings.parse(url: url, from: settings.smsFrom, user: settings.smsUser, password: settings.smsPassword),
                                 client: app.client)
        } else {
            problems.append(noSMS)
        }
        if settings.publicURL == nil && (mail != nil || sms != nil) { problems.append(noPublicURL) }
        let worker = mail == nil && sms == nil ? nil : OutboxWorker(app: app, transport: mail, from: from, sms: sms)
        return MailSetup(worker: worker, problems: problems, sms: sms)
    }
}
