import FluentPostgresDriver
import Foundation
import Vapor

/// Notices a PostgreSQL connection pool that can no longer lend a connection, and stops the server so its supervisor
/// starts a fresh one (exit code 75, EX_TEMPFAIL; see the README's "Running it").
///
/// Why: PostgresNIO 1.33 (the mirrored version) loses a query written to a connection the database has just closed — the
/// query's answer never comes, so the pool never gets that connection back. When PostgreSQL itself crashes or restarts
/// under load, a server can be left with every pooled connection lent to such a query: each request then waits the pool's
/// 10 s and fails, for good. Found by the crash harness (tests/crashharness.py), which kills PostgreSQL under load.
///
/// The watchdog asks the pool for one trivial query every `interval`. Only when two asks in a row time out waiting for a
/// connection *and* a fresh connection made outside the pool answers at once is the pool stuck (rather than the database
/// down, or busy); then it logs why and exits.
struct PoolWatchdog: Sendable {
    let app: Application
    let configuration: PostgresConnection.Configuration
    var interval: Duration = .seconds(5)
    var strikesToStop = 2
    /// Called when the pool is found stuck; the server's is `exit(75)`, a test's records it.
    var stop: @Sendable () -> Void = { exit(75) }

    init(app: Application, databaseURL: String) throws {
        self.app = app
        self.configuration = try SQLPostgresConfiguration(url: databaseURL).coreConfiguration
    }

    /// One look: whether the pool answered, timed out, or failed otherwise (the database down: not the pool's fault).
    enum Look: Equatable { case answered, poolTimedOut, failed }

    func look() async -> Look {
        do {
            guard let sql = app.db as? any SQLDatabase else { return .failed }
            _ = try await sql.raw("SELECT 1").all()
            return .answered
        } catch is ConnectionPoolTimeoutError {
            return .poolTimedOut
        } catch {
            return .failed
        }
    }

    /// Whether the database answers a connection of its own, made outside the pool (closed again at once).
    func databaseAnswersDirectly() async -> Bool {
        do {
            let connection = try await PostgresConnection.connect(on: app.eventLoopGroup.next(), configuration: configuration,
                                                                  id: 0, logger: app.logger).get()
            defer { Task { try? await connection.close() } }
            _ = try await connection.query("SELECT 1", logger: app.logger).get()
            return true
        } catch {
            return false
        }
    }

    func loop() async {
        var strikes = 0
        while !Task.isCancelled {
            switch await look() {
            case .answered, .failed: strikes = 0
            case .poolTimedOut: strikes += 1
            }
            if strikes >= strikesToStop, await databaseAnswersDirectly() {
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
