import Fluent
import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import SQLKit
import Vapor

/// Chooses the database from the settings and refuses to run on one that could lose acknowledged writes.
enum DatabaseSetup {
    static let sqliteFileName = "dermis.sqlite"

    /// Connections each event loop's pool may open (Fluent's default, named so `/metrics` can report the pool's size).
    static let connectionsPerEventLoop = 1

    /// Connections the server may hold open at once: one pool per event loop.
    static func poolSize(_ app: Application) -> Int {
        connectionsPerEventLoop * app.eventLoopGroup.makeIterator().reduce(0) { count, _ in count + 1 }
    }

    static func use(_ settings: DermisSettings, on app: Application) throws {
        if let url = settings.databaseURL {
            guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                throw Abort(.internalServerError, reason: "DATABASE_URL must start with postgres:// (got a different scheme)")
            }
            app.databases.use(try .postgres(url: url, maxConnectionsPerEventLoop: connectionsPerEventLoop, sqlLogLevel: .trace), as: .psql)
        } else {
            let directory = URL(fileURLWithPath: settings.dataDirectory, isDirectory: true)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let file = directory.appendingPathComponent(sqliteFileName).path
            app.databases.use(.sqlite(.file(file), maxConnectionsPerEventLoop: connectionsPerEventLoop, sqlLogLevel: .trace), as: .sqlite)
        }
    }

    /// Sets WAL on SQLite, then checks the settings that make a write durable (R15); throws when any is off.
    static func ensureDurable(_ database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        if database is any SQLiteDatabase {
            let mode = try await sql.raw("PRAGMA journal_mode = WAL").first()?.decode(column: "journal_mode", as: String.self)
            let synchronous = try await sql.raw("PRAGMA synchronous").first()?.decode(column: "synchronous", as: Int.self)
            let foreignKeys = try await sql.raw("PRAGMA foreign_keys").first()?.decode(column: "foreign_keys", as: Int.self)
            try Durability.checkSQLite(journalMode: mode, synchronous: synchronous, foreignKeys: foreignKeys)
        } else {
            var values: [String: String] = [:]
            for name in Durability.postgresSettings {
                values[name] = try await sql.raw("SHOW \(unsafeRaw: name)").first()?.decode(column: name, as: String.self)
            }
            try Durability.checkPostgres(values)
        }
    }
}

/// The durability rules of docs/SECURITY.md R15, as pure checks so that each refusal is testable.
public enum Durability {
    public static let postgresSettings = ["fsync", "synchronous_commit", "full_page_writes"]

    public struct Refusal: Error, CustomStringConvertible {
        public let problems: [String]
        public var description: String {
            "Dermis refuses to start: the database could lose acknowledged writes.\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// SQLite must run in WAL mode with synchronous=FULL (2) and foreign_keys=ON (1).
    public static func checkSQLite(journalMode: String?, synchronous: Int?, foreignKeys: Int?) throws {
        var problems: [String] = []
        if journalMode?.lowercased() != "wal" { problems.append("SQLite journal_mode is \(journalMode ?? "unknown"), needs wal") }
        if synchronous != 2 { problems.append("SQLite synchronous is \(synchronous.map(String.init) ?? "unknown"), needs 2 (FULL)") }
        if foreignKeys != 1 { problems.append("SQLite foreign_keys is \(foreignKeys.map(String.init) ?? "unknown"), needs 1 (ON)") }
        if !problems.isEmpty { throw Refusal(problems: problems) }
    }

    /// PostgreSQL must have fsync, synchronous_commit and full_page_writes on.
    public static func checkPostgres(_ values: [String: String]) throws {
        let problems = postgresSettings.compactMap { name -> String? in
            let value = values[name]
            return value == "on" ? nil : "PostgreSQL \(name) is \(value ?? "unknown"), needs on"
        }
        if !problems.isEmpty { throw Refusal(problems: problems) }
    }
}
