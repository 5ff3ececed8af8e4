import FluentPostgresDriver
import Foundation
import Vapor

/// Notices a PostgreSQL connection pool that can no longer lend a connection, and stops the server so its supervisor
/// starts a fresh one (exit code 75, EX_TEMPFAIL; the README's "Run it under a supervisor").
///
/// Why: PostgresNIO 1.33 (the mirrored version) loses a query written to a connection the database has just closed — the
/// query's answer never comes, so the pool never gets that connection back. When PostgreSQL itself crashes or restarts
/// under load, a server can be left with every pooled connection lent to such a query: each request then waits the pool's
/// 10 s and fails, for good. Found by the crash harness (tests/crashharness.py), which kills PostgreSQL under load.
///
/// The watchdog asks each event loop's pool for one trivial query every `interval`. Only when one pool's asks time out
/// twice in a row waiting for a connection *and* a fresh connection made outside the pool answers is that pool stuck
/// (rather than the database down, or busy); then it logs why and exits.
struct PoolWatchdog: Sendable {
    let app: Application
    let configuration: PostgresConnection.Configuration
    var interval: Duration = .seconds(5)
    var strikesToStop = 2
    /// Called when the pool is found stuck.
    var stop: @Sendable () -> Void = { exit(75) }

    init(app: Application, databaseURL: String) throws {
        self.app = app
        self.configuration = try SQLPostgresConfiguration(url: databaseURL).coreConfiguration
    }

    /// One look: whether the pool answered, timed out, or failed otherwise (the database down: not the pool's fault).
    enum Look: Equatable { case answered, poolTimedOut, failed }

    /// A look at each event loop's pool (each lends its own connections), all at once.
    func look() async -> [Look] {
        let loops = Array(app.eventLoopGroup.makeIterator())
        return await withTaskGroup(of: (Int, Look).self) { group in
            for (index, loop) in loops.enumerated() {
                group.addTask {
                    guard let sql = app.databases.database(logger: app.logger, on: loop) as? any SQLDatabase else { return (index, .failed) }
                    do {
                        _ = try await sql.raw("SELECT 1").all()
                        return (index, .answered)
                    } catch is ConnectionPoolTimeoutError {
                        return (index, .poolTimedOut)
                    } catch {
                        return (index, .failed)
                    }
                }
            }
            var looks = Array(repeating: Look.failed, count: loops.count)
            for await (index, look) in group { looks[index] = look }
            return looks
        }
    }

    /// Whether the database answers a connection of its own, made outside the pool (closed again at once).
    func databaseAnswersDirectly() async -> Bool {
        do {
            let connection = try await PostgresConnection.connect(on: app.eventLoopGroup.next(), configuration: configuration,
                                                                  id: 0, logger: app.logger).get()
            let answered = (try? await connection.query("SELECT 1", logger: app.logger).get()) != nil
            try? await connection.close()
            return answered
        } catch {
            return false
        }
    }

    func loop() async {
        var strikes: [Int] = []
        while !Task.isCancelled {
            let looks = await look()
            if strikes.count != looks.count { strikes = Array(repeating: 0, count: looks.count) }
            for (index, look) in looks.enumerated() { strikes[index] = look == .poolTimedOut ? strikes[index] + 1 : 0 }
            if strikes.contains(where: { $0 >= strikesToStop }), await databaseAnswersDirectly() {
                app.logger.critical("""
                    The database answers, but this server's connection pool has lent every connection to a query that will \
                    never finish (a PostgresNIO fault after PostgreSQL restarted). Exiting with code 75 so the supervisor \
                    starts a fresh server.
                    """)
                stop()
                return
            }
            try? await Task.sleep(for: interval)
        }
    }
}
