import Crypto
import FluentSQLiteDriver
import Foundation

/// A consistent copy of a SQLite data folder, taken while the server runs: the database through `VACUUM INTO` (one read
/// transaction, so the copy is a single moment), then the photos (written before the rows that name them, so every
/// photo the copy names is there), the secret key (without it the copied authenticator keys and link tokens cannot be
/// opened) and the audit checkpoints. `manifest.json` lists every file with its size and SHA-256; `verify` checks them
/// and the database's own integrity; `restore` verifies, then copies into an empty data folder.
public enum Backup {
    public static let manifestName = "manifest.json"
    static let format = "dermis-backup/1"

    struct Manifest: Codable {
        var format: String
        var created: String
        var database: String
        var files: [File]

        struct File: Codable, Equatable {
            var path: String
            var bytes: Int
            var sha256: String
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Backs up `dataDirectory` into `destination` (created; must be empty). Returns the number of files and bytes.
    @discardableResult
    public static func create(dataDirectory: String, to destination: String, now: Date = Date()) async throws -> (files: Int, bytes: Int) {
        let fm = FileManager.default
        let source = URL(fileURLWithPath: dataDirectory, isDirectory: true)
        let target = URL(fileURLWithPath: destination, isDirectory: true)
        let database = source.appendingPathComponent(DatabaseSetup.sqliteFileName)
        guard fm.fileExists(atPath: database.path) else {
            throw Failure("--data-dir: no Dermis database at \(database.path)")
        }
        if fm.fileExists(atPath: target.path) {
            guard (try fm.contentsOfDirectory(atPath: target.path)).isEmpty else { throw Failure("--to: \(target.path) is not empty") }
        }
        try fm.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

        // The database first: a single read transaction, so the copy is one moment of it, taken while the server writes.
        let connection = try await SQLiteConnection.open(storage: .file(path: database.path))
        do {
            let copy = target.appendingPathComponent(DatabaseSetup.sqliteFileName).path
            _ = try await connection.query("VACUUM INTO '\(copy.replacingOccurrences(of: "'", with: "''"))'")
            try await connection.close()
            // The copy's row ids may have moved: its search index is written afresh from its own rows.
            let copied = try await SQLiteConnection.open(storage: .file(path: copy))
            do {
                let tables = try await copied.query("SELECT name FROM sqlite_master WHERE name = 'patient_search'")
                if !tables.isEmpty {
                    _ = try await copied.query("BEGIN")
                    _ = try await copied.query("DELETE FROM patient_search")
                    _ = try await copied.query("INSERT INTO patient_search (rowid, patient_id, search_name, phone_e164) SELECT rowid, id, search_name, phone_e164 FROM patient")
                    _ = try await copied.query("COMMIT")
                }
                try await copied.close()
            } catch {
                try? await copied.close()
                throw error
            }
        } catch {
            try? await connection.close()
            throw error
        }
        // Then what the copy may name: photos are written before their rows, so every one it names exists by now.
        for name in ["photos", "secret.key", AuditCheckpoints.fileName] {
            let from = source.appendingPathComponent(name)
            guard fm.fileExists(atPath: from.path) else { continue }
            try fm.copyItem(at: from, to: target.appendingPathComponent(name))
        }
        let files = try listing(target).filter { $0 != manifestName }
        let manifest = Manifest(format: format, created: ISO8601DateFormatter().string(from: now), database: "sqlite",
                                files: try files.map { try describe(target.appendingPathComponent($0), as: $0) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(manifest).write(to: target.appendingPathComponent(manifestName), options: .atomic)
        return (manifest.files.count, manifest.files.reduce(0) { $0 + $1.bytes })
    }

    /// What is wrong with the backup in `directory`: a file missing, changed or unlisted, or a database that fails its
    /// integrity check. Empty when it is sound.
    public static func verify(_ directory: String) async throws -> [String] {
        let root = URL(fileURLWithPath: directory, isDirectory: true)
        guard let data = FileManager.default.contents(atPath: root.appendingPathComponent(manifestName).path) else {
            return ["\(manifestName) is missing: \(root.path) is not a Dermis backup"]
        }
        guard let manifest = try? JSONDecoder().decode(Manifest.self, from: data), manifest.format == format else {
            return ["\(manifestName) is not a \(format) manifest"]
        }
        var problems: [String] = []
        let listed = Set(manifest.files.map(\.path))
        for file in manifest.files {
            let url = root.appendingPathComponent(file.path)
            guard FileManager.default.fileExists(atPath: url.path) else { problems.append("\(file.path): missing"); continue }
            let found = try describe(url, as: file.path)
            if found.bytes != file.bytes || found.sha256 != file.sha256 { problems.append("\(file.path): changed since the backup (SHA-256 differs)") }
        }
        for extra in try listing(root) where extra != manifestName && !listed.contains(extra) {
            problems.append("\(extra): not in the manifest")
        }
        if listed.contains(DatabaseSetup.sqliteFileName) && problems.isEmpty {
            let connection = try await SQLiteConnection.open(storage: .file(path: root.appendingPathComponent(DatabaseSetup.sqliteFileName).path))
            let rows = (try? await connection.query("PRAGMA integrity_check")) ?? []
            try? await connection.close()
            let answer = rows.first?.column("integrity_check")?.string ?? "no answer"
            if answer != "ok" { problems.append("\(DatabaseSetup.sqliteFileName): integrity check says \(answer)") }
        } else if !listed.contains(DatabaseSetup.sqliteFileName) {
            problems.append("\(DatabaseSetup.sqliteFileName): not in the backup")
        }
        return problems
    }

    /// Verifies the backup, then copies it into `dataDirectory`, which must hold no database.
    public static func restore(from directory: String, into dataDirectory: String) async throws -> Int {
        let problems = try await verify(directory)
        guard problems.isEmpty else { throw Failure("--from: the backup does not verify:\n" + problems.joined(separator: "\n")) }
        let fm = FileManager.default
        let source = URL(fileURLWithPath: directory, isDirectory: true)
        let target = URL(fileURLWithPath: dataDirectory, isDirectory: true)
        if fm.fileExists(atPath: target.path), !(try fm.contentsOfDirectory(atPath: target.path)).isEmpty {
            throw Failure("--data-dir: \(target.path) is not empty; restore only into an empty folder, so nothing is overwritten")
        }
        try fm.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let files = try listing(source).filter { $0 != manifestName }
        for path in files {
            let to = target.appendingPathComponent(path)
            try fm.createDirectory(at: to.deletingLastPathComponent(), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.copyItem(at: source.appendingPathComponent(path), to: to)
        }
        let key = target.appendingPathComponent("secret.key").path
        if fm.fileExists(atPath: key) { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key) }
        return files.count
    }

    /// Every regular file under `root`, as paths from it, sorted.
    static func listing(_ root: URL) throws -> [String] {
        let base = root.standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var paths: [String] = []
        for case let url as URL in walker where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            paths.append(String(url.standardizedFileURL.path.dropFirst(base.count).drop { $0 == "/" }))
        }
        return paths.sorted()
    }

    static func describe(_ url: URL, as path: String) throws -> Manifest.File {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        var bytes = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            bytes += chunk.count
        }
        return Manifest.File(path: path, bytes: bytes, sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }
}
