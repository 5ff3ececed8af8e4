import DermisCore
import Fluent
import Vapor

/// What the `dermis` executable asks of the app.
public enum DermisServer {
    /// Serves HTTP until SIGINT or SIGTERM; with `seedDemo`, first fills an empty database with the demo clinic.
    public static func serve(_ settings: DermisSettings, hostname: String, port: Int) async throws {
        try await withApplication(settings, arguments: ["dermis", "serve"]) { app in
            // Scheduled backups (DERMIS_BACKUP_DIR): their settings are checked before anything starts.
            let backups = try BackupSchedule.configure(settings).map { BackupRunner(schedule: $0, app: app) }
            let watchdog = try settings.databaseURL.map { try PoolWatchdog(app: app, databaseURL: $0) }
            if settings.seedDemo { announce(DemoClinic.announcement(try await DemoClinic.seedIfEmpty(app: app, history: settings.demoHistory, seed: settings.demoSeed))) }
            if try await FirstRun.isOpen(on: app.db) {
                let code = app.dermis.firstRunCode.issue()
                let shown = hostname == "0.0.0.0" || hostname == "::" ? "127.0.0.1" : hostname
                announce("""
                    No admin exists yet. Open \(settings.servesHTTPS ? "https" : "http")://\(shown):\(port)/setup (or this server's address)
                    and enter the setup code
                        \(code)
                    or run `dermis create-admin`. The code works until the first admin exists or this server stops.

                    """)
            }
            app.http.server.configuration.hostname = hostname
            app.http.server.configuration.port = port
            // The outbox worker sends while the server runs (each server of a chain runs one; they never share a message).
            var background: [Task<Void, Never>] = []
            if let worker = app.mail.worker { background.append(Task { await worker.loop() }) }
            if let problem = app.mail.problem { app.logger.notice("Outbox: \(problem)") }
            if app.payments != nil { background.append(Task { await DepositWorker(app: app).loop() }) }
            background.append(Task { await MembershipWorker(app: app).loop() })
            if let backups { background.append(Task { await backups.loop() }) }
            if let watchdog { background.append(Task { await watchdog.loop() }) }
            func stopBackground() async {
                for task in background { task.cancel() }
                for task in background { await task.value }
            }
            do {
                try await app.execute()
            } catch {
                await stopBackground()
                throw error
            }
            // SIGTERM or SIGINT: stop taking connections and let the requests in flight finish (up to the server's
            // shutdown timeout), then let the outbox worker finish the message it is sending and a backup under way
            // finish, and only then close the database. (Vapor's own shutdown closes the database before the HTTP
            // server, so a request in flight crashed.)
            app.logger.notice("Stopping: finishing the requests in flight")
            await app.server.shutdown()
            await stopBackground()
        }
    }

    /// Opens the database, checks it is durable, migrates it (and seeds the demo when asked), then closes it.
    public static func prepare(_ settings: DermisSettings) async throws {
        try await withApplication(settings, arguments: ["dermis"]) { app in
            if settings.seedDemo { announce(DemoClinic.announcement(try await DemoClinic.seedIfEmpty(app: app, history: settings.demoHistory, seed: settings.demoSeed))) }
        }
    }

    /// Creates an admin (and the clinic, on an empty database). No account ever exists until someone does this.
    public static func createAdmin(_ settings: DermisSettings, email: String, name: String, password: String,
                                   clinicName: String, timeZone: String, newClinic: Bool = false) async throws {
        try await withApplication(settings, arguments: ["dermis"]) { app in
            let clinic = try await StaffAccounts.clinic(named: clinicName, timeZone: timeZone, new: newClinic, on: app.db)
            _ = try await StaffAccounts.create(.init(email: email, name: name, password: password, role: .admin),
                                               clinicID: clinic.requireID(), createdBy: nil, on: app, db: app.db)
        }
    }

    /// Issues an API token for an active staff member; returns the token, which is shown once and stored hashed.
    public static func createToken(_ settings: DermisSettings, email: String, name: String, days: Int) async throws -> String {
        guard (1...365).contains(days) else { throw InvalidInput(path: "--expires-days", problem: "must be 1 to 365 days") }
        var token = ""
        try await withApplication(settings, arguments: ["dermis"]) { app in
            guard let user = try await StaffUser.query(on: app.db).filter(\.$email == email.lowercased()).first(), user.active else {
                throw InvalidInput(path: "--email", problem: "no active staff member has the email '\(email)'")
            }
            token = try await Sessions.issueToken(for: user.requireID(), name: name, days: days, on: app.db, at: settings.clock.now())
        }
        return token
    }

    /// Checks the audit hash chains against the checkpoints in the data folder: nil when intact, else the first problem.
    /// `checkpoints` is how many chain heads the checkpoint file anchors (0: no file, so a cut tail cannot be seen).
    public static func verifyAudit(_ settings: DermisSettings) async throws -> (rows: Int, problem: String?, checkpoints: Int) {
        var result: (Int, String?, Int) = (0, nil, 0)
        try await withApplication(settings, arguments: ["dermis"]) { app in
            let checkpoints = AuditCheckpoints.read(app.auditCheckpoints.path) ?? []
            result = (try await AuditEvent.query(on: app.db).count(), try await AuditLog.firstBreak(on: app.db, checkpoints: checkpoints),
                      checkpoints.count)
        }
        return result
    }

    /// A backup of the SQLite data folder with this server's key (see `Backup`).
    public static func backup(_ settings: DermisSettings, to destination: String) async throws -> (files: Int, bytes: Int) {
        try await Backup.create(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath, to: destination)
    }

    /// A backup into a new timestamped folder under `directory`, verified, keeping the newest `keep` (see `Backup.rotate`).
    public static func backup(_ settings: DermisSettings, into directory: String, keep: Int) async throws -> (folder: String, removed: [String]) {
        try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath, into: directory, keep: keep,
                                now: settings.clock.now())
    }

    /// Prints to the terminal now (not when a buffer fills): the demo passwords are shown once, at start.
    private static func announce(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    private static func withApplication(_ settings: DermisSettings, arguments: [String],
                                        _ body: (Application) async throws -> Void) async throws {
        var environment = try Environment.detect(arguments: arguments)
        let level = try Logger.Level.detect(from: &environment)
        let json = ProcessInfo.processInfo.environment["DERMIS_LOG_FORMAT"]?.lowercased() == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return PatientSafeLogHandler(wrapping: handler)
        }
        let app = try await Application.make(environment)
        do {
            try await configure(app, settings: settings)
            try await body(app)
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}
