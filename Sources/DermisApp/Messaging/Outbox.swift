import DermisCore
import Fluent
import Foundation
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
    let transport: any MailTransport
    let from: String

    static let lease: TimeInterval = 5 * 60
    static let maxAttempts = 6

    /// 1, 2, 4, 8, 16 minutes… after the nth failed attempt, at most an hour.
    static func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(3600, 60 * pow(2, Double(max(0, attempt - 1))))
    }

    static func messageID(_ id: UUID) -> String { "<\(id.uuidString.lowercased())@dermis>" }

    /// One pass: writes the reminders now due, claims up to `limit` due messages and sends them; returns how many were
    /// tried.
    @discardableResult
    func runOnce(limit: Int = 20) async throws -> Int {
        _ = try await AppointmentNotices.scheduleReminders(on: app.db, now: app.dermis.clock.now())
        let claimed = try await claim(limit: limit)
        for message in claimed { try await deliver(message) }
        return claimed.count
    }

    private func claim(limit: Int) async throws -> [OutboxMessage] {
        let now = app.dermis.clock.now()
        return try await Writes.transaction(app.db) { db in
            guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
            let lock = sql.dialect.name == "postgresql" ? " FOR UPDATE SKIP LOCKED" : ""
            let rows = try await sql.raw("""
                SELECT id FROM message
                WHERE (status IN ('queued', 'retry') AND COALESCE(not_before, created_at) <= \(bind: now))
                   OR (status = 'sending' AND claimed_until <= \(bind: now))
                ORDER BY created_at LIMIT \(literal: limit)\(unsafeRaw: lock)
                """).all()
            let ids = try rows.map { try $0.decode(column: "id", as: UUID.self) }
            guard !ids.isEmpty else { return [] }
            let messages = try await OutboxMessage.query(on: db).filter(\.$id ~~ ids).all()
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
        let id = try message.requireID()
        // A patient's message carries their unsubscribe link, and is not sent once they have stopped e-mail.
        var unsubscribe: String?
        var failure: MailError?
        if let patientID = message.patientID {
            if let optOut = try await MessageOptOut.find(patientID, on: app.db) {
                failure = MailError(permanent: true, message: "not sent: the patient stopped e-mail from the clinic on "
                                    + "\(AuditLog.isoDay(optOut.at)) (\(optOut.how == "one-click" ? "their mail program's unsubscribe" : "the unsubscribe link"))")
            }
            unsubscribe = app.dermis.settings.publicURL.map { $0 + UnsubscribeController.path(for: patientID, on: app) }
        }
        let mail = MailMessage(from: from, to: message.recipient, subject: message.subject, text: message.body,
                               html: Self.html(message.body), calendar: message.calendar, messageID: Self.messageID(id),
                               date: app.dermis.clock.now(), unsubscribe: unsubscribe)
        do {
            if failure == nil { try await transport.send(mail) }
        } catch let error as MailError {
            failure = error
        } catch {
            failure = MailError(permanent: false, message: "\(error)")
        }
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

    /// Runs passes until cancelled: every `interval` seconds, and at once again while there was work.
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
        get { storage[MailKey.self] ?? MailSetup(worker: nil, problem: MailSetup.notConfigured) }
        set { storage[MailKey.self] = newValue }
    }
}

/// The outbox worker when e-mail is configured; otherwise the reason nothing is sent, shown on the outbox page.
struct MailSetup: Sendable {
    let worker: OutboxWorker?
    let problem: String?

    static let notConfigured = "no e-mail transport is configured (DERMIS_SMTP_URL): messages wait here to be copied"

    static func configure(_ app: Application, settings: DermisSettings) throws -> MailSetup {
        guard let url = settings.smtpURL else { return MailSetup(worker: nil, problem: notConfigured) }
        let smtp = try SMTPSettings.parse(url: url, from: settings.mailFrom, caFile: settings.smtpCAFile)
        let transport = SMTPTransport(settings: smtp, group: app.eventLoopGroup)
        return MailSetup(worker: OutboxWorker(app: app, transport: transport, from: smtp.from), problem: nil)
    }
}
