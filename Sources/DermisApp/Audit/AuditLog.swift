import Fluent
import FluentSQLiteDriver
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Vapor

/// Appends to and verifies the hash chains (docs/SECURITY.md R10). Each clinic has its own chain, so on PostgreSQL the
/// instances serving a chain of clinics do not queue on one lock: appenders of one chain take that chain's advisory
/// lock, `seq` comes from a sequence (unique across chains, in order within one). On SQLite, which serves one
/// instance, appends run under the write lock and `seq` is the next number.
enum AuditLog {
    struct Entry: Sendable {
        var chainID: UUID?
        var at: Date
        var actorID: UUID?
        var actorEmail: String?
        var action: AuditAction
        var objectType: String
        var objectID: String?
        var patientID: UUID?
        var outcome: AuditOutcome
        var sourceIP: String
    }

    /// The newest row of a chain: what a checkpoint records.
    struct Head: Codable, Sendable, Equatable {
        var chain: UUID?
        var seq: Int
        var hash: String
    }

    /// The actor a patient's own request is written as (its actor id is the patient's).
    static let patientActor = "patient (own pages)"

    static func genesis(_ chain: UUID?) -> String { chain.map { "genesis:" + $0.uuidString } ?? "genesis" }

    /// Appends `entries` inside the open transaction `db` and returns the chains' new heads. The caller commits.
    @discardableResult
    static func append(_ entries: [Entry], in db: any Database) async throws -> [Head] {
        guard !entries.isEmpty else { return [] }
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        let postgres = sql.dialect.name == "postgresql"
        // Chains in a fixed order, so two appenders never wait on each other's locks in a cycle.
        let chains = Set(entries.map(\.chainID)).sorted { ($0?.uuidString ?? "") < ($1?.uuidString ?? "") }
        // Plain SQL on this path (no model reflection): it runs for every audited request.
        let c = columns
        var nextSeq = 0
        var previous: [UUID?: String] = [:]
        for chain in chains {
            if postgres {
                try await sql.raw("SELECT pg_advisory_xact_lock(7343001, \(bind: lockKey(chain)))").run()
                let query = sql.select().column(c.hash).from(AuditEvent.schema)
                let filtered = if let chain { query.where(SQLColumn(c.chainID), .equal, SQLBind(chain)) }
                    else { query.where(SQLColumn(c.chainID), .is, SQLLiteral.null) }
                previous[chain] = try await filtered.orderBy(c.seq, .descending).limit(1).first()?
                    .decode(column: c.hash, as: String.self) ?? genesis(chain)
            } else {
                // One statement: the newest number overall and the chain's newest hash (`IS ?` also matches NULL).
                let row = try await sql.raw("""
                    SELECT (SELECT max(\(ident: c.seq)) FROM \(ident: AuditEvent.schema)) AS top,
                           (SELECT \(ident: c.hash) FROM \(ident: AuditEvent.schema) WHERE \(ident: c.chainID) IS \(bind: chain)
                            ORDER BY \(ident: c.seq) DESC LIMIT 1) AS head
                    """).first()
                nextSeq = (try row?.decode(column: "top", as: Int?.self) ?? 0) + 1
                previous[chain] = try row?.decode(column: "head", as: String?.self) ?? genesis(chain)
            }
        }
        var insert = sql.insert(into: AuditEvent.schema).columns(c.all)
        var rows = 0
        var heads: [UUID?: Head] = [:]
        for entry in entries {
            // One INSERT binds 14 values a row; the databases allow 32,766 and 65,535: 256 rows at a time.
            if rows == AuditWriter.maximumBatch {
                try await insert.run()
                insert = sql.insert(into: AuditEvent.schema).columns(c.all)
                rows = 0
            }
            rows += 1
            let seq: Int
            if postgres {
                seq = try await sql.raw("SELECT nextval('audit_event_seq') AS seq").first()?.decode(column: "seq", as: Int.self) ?? 0
            } else {
                seq = nextSeq
                nextSeq += 1
            }
            let row = AuditRecord(seq: seq, chainID: entry.chainID, at: isoMilliseconds(entry.at), actorID: entry.actorID,
                                  actorEmail: entry.actorEmail, action: entry.action.rawValue, objectType: entry.objectType,
                                  objectID: entry.objectID, patientID: entry.patientID, outcome: entry.outcome.rawValue,
                                  sourceIP: entry.sourceIP, prevHash: previous[entry.chainID] ?? genesis(entry.chainID))
            let hash = row.computedHash
            previous[entry.chainID] = hash
            heads[entry.chainID] = Head(chain: entry.chainID, seq: seq, hash: hash)
            insert = insert.values([
                SQLBind(UUID()), SQLBind(row.seq), SQLBind(row.chainID), SQLBind(row.at), SQLBind(row.actorID), SQLBind(row.actorEmail),
                SQLBind(row.action), SQLBind(row.objectType), SQLBind(row.objectID), SQLBind(row.patientID), SQLBind(row.outcome),
                SQLBind(row.sourceIP), SQLBind(row.prevHash), SQLBind(hash),
            ] as [any SQLExpression])
        }
        try await insert.run()
        return chains.compactMap { heads[$0] }
    }

    /// The columns this path names, read once from the model's fields.
    private static let columns = Columns()

    private struct Columns {
        let seq = Column<AuditEvent>.name(\.$seq)
        let hash = Column<AuditEvent>.name(\.$hash)
        let chainID = Column<AuditEvent>.name(\.$chainID)
        /// In the order the insert binds them.
        let all = [Column<AuditEvent>.name(\._$id), Column<AuditEvent>.name(\.$seq), Column<AuditEvent>.name(\.$chainID),
                   Column<AuditEvent>.name(\.$at), Column<AuditEvent>.name(\.$actorID), Column<AuditEvent>.name(\.$actorEmail),
                   Column<AuditEvent>.name(\.$action), Column<AuditEvent>.name(\.$objectType), Column<AuditEvent>.name(\.$objectID),
                   Column<AuditEvent>.name(\.$patientID), Column<AuditEvent>.name(\.$outcome), Column<AuditEvent>.name(\.$sourceIP),
                   Column<AuditEvent>.name(\.$prevHash), Column<AuditEvent>.name(\.$hash)]
    }

    /// The second key of a chain's advisory lock: 32 bits of its id (0 for the chain with no clinic).
    private static func lockKey(_ chain: UUID?) -> Int32 {
        guard let chain else { return 0 }
        let b = chain.uuid
        return Int32(bitPattern: UInt32(b.0) << 24 | UInt32(b.1) << 16 | UInt32(b.2) << 8 | UInt32(b.3))
    }

    /// Nil when every chain is intact and holds its checkpointed head; else the first problem found.
    static func firstBreak(on db: any Database, checkpoints: [Head] = []) async throws -> String? {
        var previous: [UUID?: String] = [:]
        var heads: [UUID?: Head] = [:]
        for event in try await AuditEvent.query(on: db).sort(\.$seq).all() {
            let id = event.id?.uuidString ?? "?"
            let chain = event.chainID
            // Numbers may skip (PostgreSQL's sequence skips a rolled-back row); the hashes say what is missing.
            if event.prevHash != previous[chain, default: genesis(chain)] {
                let before = heads[chain].map { "seq \($0.seq)" } ?? "the start of its chain"
                return "row seq \(event.seq) (id \(id)) does not link to \(before): a row between them is missing or was changed"
            }
            if event.hash != event.computedHash { return "row seq \(event.seq) (id \(id)) does not match its hash: it was changed" }
            previous[chain] = event.hash
            heads[chain] = Head(chain: chain, seq: event.seq, hash: event.hash)
        }
        for checkpoint in checkpoints {
            let name = checkpoint.chain.map { "chain \($0.uuidString)" } ?? "the chain with no clinic"
            guard let head = heads[checkpoint.chain] else {
                return "\(name) is gone: the checkpoint names row seq \(checkpoint.seq), and no row of it is left"
            }
            if head.seq < checkpoint.seq {
                return "rows were removed from the end of \(name): the checkpoint names row seq \(checkpoint.seq), the newest left is seq \(head.seq)"
            }
            let row = try await AuditEvent.query(on: db).filter(\.$seq == checkpoint.seq).first()
            if row?.hash != checkpoint.hash || row?.chainID != checkpoint.chain {
                return "row seq \(checkpoint.seq) of \(name) is not the row the checkpoint recorded"
            }
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

/// Group commit for audit rows that belong to no change (reads, searches, refused attempts): rows of concurrent
/// requests share one transaction, and each request goes on only after the commit that holds its row. One flush runs
/// at a time; what arrives meanwhile waits for the next.
final class AuditWriter: Sendable {
    private struct Pending {
        let entries: [AuditLog.Entry]
        let done: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var pending: [Pending] = []
        var flushing = false
    }

    private let state = NIOLockedValueBox(State())
    private let database: @Sendable () -> any Database
    private let checkpoints: AuditCheckpoints
    private let committed = NIOLockedValueBox(0)

    /// How many transactions have committed rows so far: fewer than the rows when requests come together.
    var batches: Int { committed.withLockedValue { $0 } }

    /// Told how long each append waited for its commit (for the metrics).
    let observe: @Sendable (Duration) -> Void

    init(database: @escaping @Sendable () -> any Database, checkpoints: AuditCheckpoints,
         observe: @escaping @Sendable (Duration) -> Void = { _ in }) {
        self.database = database
        self.checkpoints = checkpoints
        self.observe = observe
    }

    /// The most rows one INSERT takes (it binds 14 values a row; the databases allow 32,766 and 65,535). A transaction
    /// takes the requests waiting up to this many rows, or one request's many rows (`AuditLog.append` splits them).
    static let maximumBatch = 256

    /// Returns once `entries` are durable, all in one commit (a search page's or an export batch's patients: one row
    /// each, one wait); throws if their commit failed.
    func append(_ entries: [AuditLog.Entry]) async throws {
        guard !entries.isEmpty else { return }
        let started = ContinuousClock.now
        defer { observe(ContinuousClock.now - started) }
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            let start = state.withLockedValue { state in
                state.pending.append(Pending(entries: entries, done: done))
                defer { state.flushing = true }
                return !state.flushing
            }
            // Detached: the flush belongs to no request and must not join any request's unit of work.
            if start { Task.detached { await self.flush() } }
        }
    }

    private func flush() async {
        while true {
            let batch = state.withLockedValue { state in
                var rows = 0
                var taken = 0
                for pending in state.pending {
                    if taken > 0 && rows + pending.entries.count > Self.maximumBatch { break }
                    rows += pending.entries.count
                    taken += 1
                }
                let batch = Array(state.pending.prefix(taken))
                state.pending.removeFirst(taken)
                if batch.isEmpty { state.flushing = false }
                return batch
            }
            if batch.isEmpty { return }
            do {
                let checkpoints = self.checkpoints
                try await Writes.transaction(database()) { db in
                    let heads = try await AuditLog.append(batch.flatMap(\.entries), in: db)
                    Writes.current?.afterCommit { checkpoints.advance(heads) }
                }
                committed.withLockedValue { $0 += 1 }
                for pending in batch { pending.done.resume() }
            } catch {
                for pending in batch { pending.done.resume(throwing: error) }
            }
        }
    }
}

/// The chains' heads anchored outside the database (docs/SECURITY.md R10): `audit-checkpoints.json` in the data folder,
/// rewritten atomically at most once a second and at shutdown, and each written head in the log. `dermis verify-audit`
/// checks the chains against it, so removing the newest rows is found.
final class AuditCheckpoints: Sendable {
    static let fileName = "audit-checkpoints.json"

    private struct State {
        var heads: [String: AuditLog.Head] = [:]
        var dirty = false
        var lastWrite: UInt64 = 0
        var scheduled = false
    }

    let path: String
    private let state = NIOLockedValueBox(State())
    /// One file write at a time, so an older snapshot never lands after a newer one.
    private let writing = NIOLock()
    private let logger: Logger

    init(dataDirectory: String, logger: Logger) {
        path = URL(fileURLWithPath: dataDirectory).appendingPathComponent(Self.fileName).path
        self.logger = logger
        if let saved = Self.read(path) {
            state.withLockedValue { state in for head in saved { state.heads[Self.key(head.chain)] = head } }
        }
    }

    private static func key(_ chain: UUID?) -> String { chain?.uuidString ?? "-" }

    /// Records committed heads; writes the file if the last write is a second old, else once that second is up (so
    /// the newest heads reach the disk even if nothing more is written).
    func advance(_ heads: [AuditLog.Head]) {
        let (due, schedule) = state.withLockedValue { state -> (Bool, Bool) in
            for head in heads where head.seq > (state.heads[Self.key(head.chain)]?.seq ?? 0) {
                state.heads[Self.key(head.chain)] = head
                state.dirty = true
            }
            let due = state.dirty && DispatchTime.now().uptimeNanoseconds - state.lastWrite >= 1_000_000_000
            let schedule = state.dirty && !due && !state.scheduled
            if schedule { state.scheduled = true }
            return (due, schedule)
        }
        if due { flush() }
        if schedule {
            Task.detached {
                try? await Task.sleep(for: .seconds(1))
                self.state.withLockedValue { $0.scheduled = false }
                self.flush()
            }
        }
    }

    /// Writes the file now if anything changed since the last write.
    func flush() {
        writing.withLock { write() }
    }

    private func write() {
        let heads = state.withLockedValue { state -> [AuditLog.Head]? in
            guard state.dirty else { return nil }
            state.dirty = false
            state.lastWrite = DispatchTime.now().uptimeNanoseconds
            return state.heads.values.sorted { $0.seq < $1.seq }
        }
        guard let heads else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let file = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try encoder.encode(heads).write(to: file, options: .atomic)
            for head in heads {
                logger.info("audit checkpoint", metadata: ["chain": "\(head.chain?.uuidString ?? "-")", "seq": "\(head.seq)", "hash": "\(head.hash)"])
            }
        } catch {
            logger.error("audit checkpoint not written: \(error)")
            state.withLockedValue { $0.dirty = true }
        }
    }

    /// The heads in a checkpoint file; empty when there is none.
    static func read(_ path: String) -> [AuditLog.Head]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode([AuditLog.Head].self, from: data)
    }
}

/// Chains per clinic (the `chain_id` column and its index), `seq` from a sequence on PostgreSQL, and TRUNCATE refused
/// there as UPDATE and DELETE already are.
struct AuditChains: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(AuditEvent.schema).field("chain_id", .uuid).update()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.create(index: "audit_event_chain_seq").on(AuditEvent.schema).column("chain_id").column("seq").run()
        if sql.dialect.name == "postgresql" {
            try await sql.raw("CREATE SEQUENCE audit_event_seq").run()
            try await sql.raw("SELECT setval('audit_event_seq', COALESCE((SELECT max(seq) FROM audit_event), 0) + 1, false)").run()
            try await sql.raw("""
                CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
                FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
                """).run()
        }
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        if sql.dialect.name == "postgresql" {
            try await sql.raw("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event").run()
            try await sql.raw("DROP SEQUENCE IF EXISTS audit_event_seq").run()
        }
        try await sql.drop(index: "audit_event_chain_seq").run()
        try await database.schema(AuditEvent.schema).deleteField("chain_id").update()
    }
}

extension Application {
    private struct AuditWriterKey: StorageKey { typealias Value = AuditWriter }
    private struct AuditCheckpointsKey: StorageKey { typealias Value = AuditCheckpoints }

    var auditCheckpoints: AuditCheckpoints {
        get { storage[AuditCheckpointsKey.self]! }
        set { storage[AuditCheckpointsKey.self] = newValue }
    }

    var auditWriter: AuditWriter {
        get { storage[AuditWriterKey.self]! }
        set { storage[AuditWriterKey.self] = newValue }
    }
}
