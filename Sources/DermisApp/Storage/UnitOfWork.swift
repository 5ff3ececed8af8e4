import Fluent
import FluentSQLiteDriver
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Vapor

/// The one way Dermis writes: a unit of work is one database transaction. Everything a request writes inside it —
/// the change, every step of a multi-step operation, and the audit row — commits together or not at all.
///
/// While a unit of work is open, `req.db` *is* its transaction (a task-local), so a service or helper that writes
/// through `req.db` or the database it was handed joins the transaction instead of committing on its own, and a
/// nested `Writes.transaction` joins the outer one. See docs/ARCHITECTURE.md, "Writing data".
///
/// SQLite lets one writer in at a time, and a transaction that read before writing fails at once (SQLITE_BUSY_SNAPSHOT)
/// if another wrote in between — so on SQLite, which serves one instance, units of work queue in-process and begin
/// IMMEDIATE. PostgreSQL needs no queue: row locks, unique indexes, exclusion constraints and advisory locks do the work.
enum Writes {
    static let lock = AsyncLock()

    /// The open unit of work of this task, if any.
    @TaskLocal static var current: UnitOfWork?

    /// Runs `body` in a transaction (or in the one already open) and returns its result once it has committed.
    static func transaction<T>(_ db: any Database, _ body: @escaping (any Database) async throws -> T) async throws -> T {
        if let current { return try await body(current.db) }
        let box = UncheckedBox(body)
        let hooks = UnitOfWork.Hooks()
        let result: UncheckedBox<T>
        if db is any SQLiteDatabase {
            result = try await lock.withLock {
                try await db.withConnection { connection in
                    guard let sql = connection as? any SQLDatabase else { throw Abort(.internalServerError) }
                    try await sql.raw("BEGIN IMMEDIATE").run()
                    do {
                        let outcome = try await run(box.value, on: connection, hooks)
                        try await sql.raw("COMMIT").run()
                        return outcome
                    } catch {
                        try? await sql.raw("ROLLBACK").run()
                        throw error
                    }
                }
            }
        } else {
            result = try await db.transaction { tx in try await run(box.value, on: tx, hooks) }
        }
        hooks.run()
        return result.value
    }

    private static func run<T>(_ body: (any Database) async throws -> T, on db: any Database,
                               _ hooks: UnitOfWork.Hooks) async throws -> UncheckedBox<T> {
        let work = UnitOfWork(db: db, hooks: hooks)
        let value = try await $current.withValue(work) { try await body(db) }
        try await work.appendAudit()
        return UncheckedBox(value)
    }

    /// Runs `body` so that, if it fails, only its own writes are undone and the unit of work goes on: for a write whose
    /// constraint failure the caller handles (a duplicate serial, a record-number collision). PostgreSQL aborts the
    /// whole transaction on a failed statement unless it ran under a savepoint; SQLite undoes only the statement.
    /// Audit rows recorded inside `body` go with it.
    static func savepoint<T>(_ db: any Database, _ body: @escaping (any Database) async throws -> T) async throws -> T {
        guard let work = current else { return try await transaction(db, body) }
        guard let sql = work.db as? any SQLDatabase else { throw Abort(.internalServerError) }
        let postgres = sql.dialect.name == "postgresql"
        let recorded = work.auditMark()
        if postgres { try await sql.raw("SAVEPOINT dermis_step").run() }
        do {
            let value = try await body(work.db)
            if postgres { try await sql.raw("RELEASE SAVEPOINT dermis_step").run() }
            return value
        } catch {
            if postgres { try await sql.raw("ROLLBACK TO SAVEPOINT dermis_step").run() }
            work.dropAudit(after: recorded)
            throw error
        }
    }
}

/// An open transaction: its audit rows, appended just before it commits (so a chain's lock is held only for the end of
/// the transaction), and what to do once it has committed.
final class UnitOfWork: Sendable {
    let db: any Database
    fileprivate let hooks: Hooks
    /// Audit rows to append before the commit, each with what to do once it has committed.
    private let audit = NIOLockedValueBox<(entries: [(AuditLog.Entry, @Sendable () -> Void)], checkpoints: AuditCheckpoints?)>(([], nil))

    fileprivate init(db: any Database, hooks: Hooks) {
        self.db = db
        self.hooks = hooks
    }

    /// An audit row that commits with this unit of work, or not at all; `committed` runs only if the row does (a row
    /// dropped with a rolled-back savepoint takes it along).
    func record(_ entry: AuditLog.Entry, checkpoints: AuditCheckpoints, committed: @escaping @Sendable () -> Void) {
        audit.withLockedValue { $0.entries.append((entry, committed)); $0.checkpoints = checkpoints }
    }

    fileprivate func auditMark() -> Int { audit.withLockedValue { $0.entries.count } }

    fileprivate func dropAudit(after mark: Int) { audit.withLockedValue { $0.entries.removeSubrange(mark...) } }

    fileprivate func appendAudit() async throws {
        let (entries, checkpoints) = audit.withLockedValue { ($0.entries, $0.checkpoints) }
        guard !entries.isEmpty, let checkpoints else { return }
        let heads = try await AuditLog.append(entries.map(\.0), in: db)
        afterCommit { checkpoints.advance(heads) }
        for (_, committed) in entries { afterCommit(committed) }
    }

    /// Runs `hook` after the commit; never if the transaction rolls back.
    func afterCommit(_ hook: @escaping @Sendable () -> Void) {
        hooks.add(hook)
    }

    fileprivate final class Hooks: Sendable {
        private let afterCommit = NIOLockedValueBox<[@Sendable () -> Void]>([])

        func add(_ hook: @escaping @Sendable () -> Void) { afterCommit.withLockedValue { $0.append(hook) } }

        func run() {
            for hook in afterCommit.withLockedValue({ $0 }) { hook() }
        }
    }
}

/// The database a store holds: the open unit of work's transaction when there is one — even if the store was made
/// before it opened — else the one it was given.
struct UnitOfWorkDatabase: Sendable {
    private let base: any Database

    init(_ base: any Database) { self.base = base }

    var current: any Database { Writes.current?.db ?? base }
}

/// Carries a value across Fluent's `@Sendable` closure boundary; the value never crosses threads concurrently.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

extension Request {
    /// The request's database: the open unit of work's transaction while there is one, else the connection pool.
    /// It shadows Fluent's `Request.db`, so no write inside a unit of work can slip out of it.
    var db: any Database { Writes.current?.db ?? self.db(nil) }
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

/// Makes each state-changing request of a route group one unit of work: whatever the handler writes, and the audit
/// rows it appends, commit together when it answers and roll back together when it throws or answers with a refusal
/// (a page re-rendered with its errors). For the set-up pages and APIs (staff, schedule, inventory, account), whose
/// handlers change a few rows and then audit the change.
struct UnitOfWorkMiddleware: AsyncMiddleware {
    private struct Refused: Error {
        let response: Response
    }

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard ![.GET, .HEAD, .OPTIONS].contains(request.method) else { return try await next.respond(to: request) }
        do {
            return try await Writes.transaction(request.db) { _ in
                let response = try await next.respond(to: request)
                if response.status.code >= 400 { throw Refused(response: response) }
                return response
            }
        } catch let refused as Refused {
            return refused.response
        }
    }
}
