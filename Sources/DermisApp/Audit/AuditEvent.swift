import Crypto
import Fluent
import FluentSQLiteDriver
import Foundation
import SQLKit
import Vapor

/// One audited access (the shape of a FHIR AuditEvent): who, when, what, which patient, the outcome, from where.
/// Each row hashes its content and the previous row's hash, so any edit or removal breaks the chain.
final class AuditEvent: Model, @unchecked Sendable {
    static let schema = "audit_event"

    @ID(key: .id) var id: UUID?
    @Field(key: "seq") var seq: Int
    /// ISO 8601 UTC with milliseconds, stored as text so the hash is computed over exactly what is stored.
    @Field(key: "at") var at: String
    @OptionalField(key: "actor_id") var actorID: UUID?
    @OptionalField(key: "actor_email") var actorEmail: String?
    @Field(key: "action") var action: String
    @Field(key: "object_type") var objectType: String
    @OptionalField(key: "object_id") var objectID: String?
    @OptionalField(key: "patient_id") var patientID: UUID?
    @Field(key: "outcome") var outcome: String
    @Field(key: "source_ip") var sourceIP: String
    @Field(key: "prev_hash") var prevHash: String
    @Field(key: "hash") var hash: String

    init() {}

    /// The text the hash covers: every field, in a fixed order, then the previous hash.
    var canonicalText: String {
        [String(seq), at, actorID?.uuidString ?? "", actorEmail ?? "", action, objectType, objectID ?? "",
         patientID?.uuidString ?? "", outcome, sourceIP, prevHash].joined(separator: "\u{1f}")
    }

    var computedHash: String {
        Secrets.digest(canonicalText)
    }
}

enum AuditAction: String, Sendable, CaseIterable {
    case read, search, create, update, archive, export, access
    case signIn = "sign-in", signOut = "sign-out"
    case staffChange = "staff-change"
}

enum AuditOutcome: String, Sendable {
    case success, denied, notFound = "not-found", invalid, conflict, failure
}

struct CreateAuditEvent: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(AuditEvent.schema)
            .id()
            .field("seq", .int, .required)
            .field("at", .string, .required)
            .field("actor_id", .uuid)
            .field("actor_email", .string)
            .field("action", .string, .required)
            .field("object_type", .string, .required)
            .field("object_id", .string)
            .field("patient_id", .uuid)
            .field("outcome", .string, .required)
            .field("source_ip", .string, .required)
            .field("prev_hash", .string, .required)
            .field("hash", .string, .required)
            .unique(on: "seq")
            .unique(on: "prev_hash")
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        // Append-only in the database itself: UPDATE and DELETE abort (R10).
        if sql.dialect.name == "sqlite" {
            for operation in ["UPDATE", "DELETE"] {
                try await sql.raw("""
                    CREATE TRIGGER audit_event_no_\(unsafeRaw: operation.lowercased()) BEFORE \(unsafeRaw: operation) ON audit_event
                    BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END
                    """).run()
            }
        } else {
            try await sql.raw("""
                CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$
                """).run()
            try await sql.raw("""
                CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
                FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
                """).run()
        }
    }

    func revert(on database: any Database) async throws {
        try await database.schema(AuditEvent.schema).delete()
        if let sql = database as? any SQLDatabase, sql.dialect.name != "sqlite" {
            try await sql.raw("DROP FUNCTION IF EXISTS audit_event_append_only()").run()
        }
    }
}

/// Appends to and verifies the hash chain.
enum AuditLog {
    static let genesis = "genesis"

    struct Entry: Sendable {
        var actorID: UUID?
        var actorEmail: String?
        var action: AuditAction
        var objectType: String
        var objectID: String?
        var patientID: UUID?
        var outcome: AuditOutcome
        var sourceIP: String
    }

    /// One append at a time: in this process by the write lock, across instances by PostgreSQL's advisory lock.
    static func append(_ entry: Entry, at date: Date, on database: any Database) async throws {
        try await Writes.lock.withLock {
            try await database.transaction { db in
                if let sql = db as? any SQLDatabase, sql.dialect.name == "postgresql" {
                    try await sql.raw("SELECT pg_advisory_xact_lock(7343001)").run()
                }
                let last = try await AuditEvent.query(on: db).sort(\.$seq, .descending).first()
                let event = AuditEvent()
                event.seq = (last?.seq ?? 0) + 1
                event.at = isoMilliseconds(date)
                event.actorID = entry.actorID
                event.actorEmail = entry.actorEmail
                event.action = entry.action.rawValue
                event.objectType = entry.objectType
                event.objectID = entry.objectID
                event.patientID = entry.patientID
                event.outcome = entry.outcome.rawValue
                event.sourceIP = entry.sourceIP
                event.prevHash = last?.hash ?? genesis
                event.hash = event.computedHash
                try await event.create(on: db)
            }
        }
    }

    /// Nil when the chain is intact; else the first bad row and what is wrong with it.
    static func firstBreak(on db: any Database) async throws -> String? {
        var previous = genesis
        var expectedSeq = 1
        for event in try await AuditEvent.query(on: db).sort(\.$seq).all() {
            let id = event.id?.uuidString ?? "?"
            if event.seq != expectedSeq { return "row seq \(expectedSeq) is missing (next is seq \(event.seq), id \(id))" }
            if event.prevHash != previous { return "row seq \(event.seq) (id \(id)) does not link to the row before it" }
            if event.hash != event.computedHash { return "row seq \(event.seq) (id \(id)) does not match its hash: it was changed" }
            previous = event.hash
            expectedSeq += 1
        }
        return nil
    }

    /// ISO 8601 in UTC with milliseconds (`2026-11-27T10:00:00.000Z`): the audit's timestamps and the pages' instants.
    static func isoMilliseconds(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// The UTC day of an instant (`2026-11-27`), for lists.
    static func isoDay(_ date: Date) -> String {
        String(isoMilliseconds(date).prefix(10))
    }
}

extension Request {
    /// Writes one audit event for this request's caller.
    func audit(_ action: AuditAction, objectType: String, objectID: String? = nil, patientID: UUID? = nil,
               outcome: AuditOutcome) async throws {
        let entry = AuditLog.Entry(
            actorID: principal?.userID, actorEmail: principal?.email ?? patientLink.map { "patient-link \($0.id?.uuidString.prefix(8) ?? "")" },
            action: action, objectType: objectType,
            objectID: objectID ?? (parameters.get("patientID") as String?), patientID: patientID ?? (parameters.get("patientID") as String?).flatMap(UUID.init(uuidString:)),
            outcome: outcome, sourceIP: clientAddress)
        try await AuditLog.append(entry, at: dermis.clock.now(), on: db)
    }

    /// Runs `body` and audits it: success, or the outcome its error means (404 → not-found, 409 → conflict…).
    /// `subject` names the patient a created object turned out to be.
    func audited<T>(_ action: AuditAction, objectType: String, objectID: String? = nil, patientID: UUID? = nil,
                    subject: (T) -> UUID? = { _ in nil }, _ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            let created = subject(result)
            try await audit(action, objectType: objectType, objectID: created?.uuidString ?? objectID,
                            patientID: created ?? patientID, outcome: .success)
            return result
        } catch {
            let outcome: AuditOutcome = switch (error as? any AbortError)?.status.code {
            case 404: .notFound
            case 409, 412, 428: .conflict
            case 401, 403: .denied
            case 400, 422: .invalid
            default: .failure
            }
            try? await audit(action, objectType: objectType, objectID: objectID, patientID: patientID, outcome: outcome)
            throw error
        }
    }
}

/// Write transactions. SQLite lets one writer in at a time, and a transaction that read before writing fails at once
/// (SQLITE_BUSY_SNAPSHOT) if another wrote in between — so on SQLite, which serves one instance, write transactions
/// queue in-process. PostgreSQL needs no queue: row locks, unique indexes and advisory locks do the work.
enum Writes {
    static let lock = AsyncLock()

    static func transaction<T: Sendable>(_ db: any Database, _ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        if db is any SQLiteDatabase {
            return try await lock.withLock { try await db.transaction(body) }
        }
        return try await db.transaction(body)
    }
}

/// A mutual-exclusion lock for async code (an actor alone is re-entrant across awaits).
final class AsyncLock: @unchecked Sendable {
    private let lock = NSLock()
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withLock<T>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if locked {
                waiters.append(continuation)
                lock.unlock()
            } else {
                locked = true
                lock.unlock()
                continuation.resume()
            }
        }
    }

    private func release() {
        lock.lock()
        if waiters.isEmpty {
            locked = false
            lock.unlock()
        } else {
            let next = waiters.removeFirst()
            lock.unlock()
            next.resume()
        }
    }
}
