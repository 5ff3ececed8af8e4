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

    /// Backups read, copy and hash on a thread of their own: neither the event loops nor the thread pool that runs the
    /// server's SQLite queries and password checks wait for them.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    /// A connection to a SQLite file for the backup's own statements, on the backup's thread.
    static func open(_ path: String) async throws -> SQLiteConnection {
        try await SQLiteConnection.open(storage: .file(path: path), threadPool: pool, on: MultiThreadedEventLoopGroup.singleton.any())
    }

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

    /// Backs up `dataDirectory` into `destination` (created; must be empty) with the server key from `secretKeyPath`.
    /// Returns the number of files and bytes. Everything written is readable by this user only.
    @discardableResult
    public static func create(dataDirectory: String, secretKeyPath: String, to destination: String,
                              now: Date = Date()) async throws -> (files: Int, bytes: Int) {
        let fm = FileManager.default
        let source = URL(fileURLWithPath: dataDirectory, isDirectory: true)
        let target = URL(fileURLWithPath: destination, isDirectory: true)
        let database = source.appendingPathComponent(DatabaseSetup.sqliteFileName)
        guard fm.fileExists(atPath: database.path) else {
            throw Failure("--data-dir: no Dermis database at \(database.path)")
        }
        guard fm.fileExists(atPath: secretKeyPath) else {
            throw Failure("the server key \(secretKeyPath) is missing: without it a backup's authenticator keys and links cannot be opened")
        }
        if fm.fileExists(atPath: target.path) {
            guard (try fm.contentsOfDirectory(atPath: target.path)).isEmpty else { throw Failure("--to: \(target.path) is not empty") }
        }
        try fm.createDirectory(at: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: target.path)

        // The audit checkpoints first: they then anchor a moment the database copy already holds.
        let checkpoints = source.appendingPathComponent(AuditCheckpoints.fileName)
        if fm.fileExists(atPath: checkpoints.path) { try fm.copyItem(at: checkpoints, to: target.appendingPathComponent(AuditCheckpoints.fileName)) }
        // The database: a single read transaction, so the copy is one moment of it, taken while the server writes.
        let copy = target.appendingPathComponent(DatabaseSetup.sqliteFileName).path
        let connection = try await open(database.path)
        do {
            _ = try await connection.query("VACUUM INTO '\(copy.replacingOccurrences(of: "'", with: "''"))'")
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
        try await reindex(copy)
        // The copying and hashing run on the backup's own thread (see `pool`).
        let manifest = try await pool.runIfActive { () throws -> Manifest in
            let fm = FileManager.default
            // Then the photos the copy may name (written before their rows): the server's own names only, one by one, so a
            // photo being written or removed meanwhile is skipped rather than failing the backup.
            // A data folder without photos has none to copy; one that cannot be read fails the backup (never a backup
            // that verifies without its photos).
            let photos = PhotoStore(dataDirectory: dataDirectory).directory
            let names = fm.fileExists(atPath: photos.path) ? try fm.contentsOfDirectory(atPath: photos.path) : []
            for name in names.sorted() where PhotoStore.isServerName(name) {
                let to = target.appendingPathComponent("photos").appendingPathComponent(name)
                try fm.createDirectory(at: to.deletingLastPathComponent(), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                do { try fm.copyItem(at: photos.appendingPathComponent(name), to: to) } catch where !fm.fileExists(atPath: photos.appendingPathComponent(name).path) {
                    continue
                }
            }
            try fm.copyItem(at: URL(fileURLWithPath: secretKeyPath), to: target.appendingPathComponent("secret.key"))
            let files = try listing(target).filter { $0 != manifestName }
            for file in files { try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target.appendingPathComponent(file).path) }
            let manifest = Manifest(format: format, created: ISO8601DateFormatter().string(from: now), database: "sqlite",
                                    files: try files.map { try describe(target.appendingPathComponent($0), as: $0) })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(manifest).write(to: target.appendingPathComponent(manifestName), options: .atomic)
            return manifest
        }
        return (manifest.files.count, manifest.files.reduce(0) { $0 + $1.bytes })
    }

    /// The copy's search index written afresh from its own rows: `VACUUM INTO` may have moved their row ids.
    private static func reindex(_ path: String) async throws {
        let copied = try await open(path)
        do {
            if !(try await copied.query("SELECT name FROM sqlite_master WHERE name = 'patient_search'")).isEmpty {
                _ = try await copied.query("BEGIN")
                for statement in PatientSearchIndex.rebuildStatements { _ = try await copied.query(statement) }
                _ = try await copied.query("COMMIT")
            }
            try await copied.close()
        } catch {
            try? await copied.close()
            throw error
        }
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
        let listed = Set(manifest.files.map(\.path))
        // Hashing every file runs on the backup's own thread (see `pool`).
        var problems = try await pool.runIfActive { () throws -> [String] in
            var problems: [String] = []
            for file in manifest.files {
                // Only plain files inside the backup: no absolute path, no "..", no symbolic link.
                guard !file.path.hasPrefix("/"), !file.path.split(separator: "/").contains(".."), !file.path.isEmpty else {
                    problems.append("\(file.path): not a path inside the backup"); continue
                }
                let url = root.appendingPathComponent(file.path)
                guard let type = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.type] as? FileAttributeType else {
                    problems.append("\(file.path): missing"); continue
                }
                guard type == .typeRegular else { problems.append("\(file.path): not a plain file"); continue }
                // Inside the backup once links are followed too: a linked folder must not bring in a file from elsewhere.
                guard url.resolvingSymlinksInPath().path.hasPrefix(root.resolvingSymlinksInPath().path + "/") else {
                    problems.append("\(file.path): not a path inside the backup"); continue
                }
                let found = try describe(url, as: file.path)
                if found.bytes != file.bytes || found.sha256 != file.sha256 { problems.append("\(file.path): changed since the backup (SHA-256 differs)") }
            }
            for extra in try listing(root) where extra != manifestName && !listed.contains(extra) {
                problems.append("\(extra): not in the manifest")
            }
            return problems
        }
        if listed.contains(DatabaseSetup.sqliteFileName) && problems.isEmpty {
            let connection = try await open(root.appendingPathComponent(DatabaseSetup.sqliteFileName).path)
            let rows = (try? await connection.query("PRAGMA integrity_check")) ?? []
            try? await connection.close()
            let answer = rows.first?.column("integrity_check")?.string ?? "no answer"
            if answer != "ok" { problems.append("\(DatabaseSetup.sqliteFileName): integrity check says \(answer)") }
        } else if !listed.contains(DatabaseSetup.sqliteFileName) {
            problems.append("\(DatabaseSetup.sqliteFileName): not in the backup")
        }
        if !listed.contains("secret.key") && !problems.contains(where: { $0.hasPrefix("secret.key") }) { problems.append("secret.key: not in the backup") }
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
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: target.path)
        // Exactly the files the manifest lists (verified above), readable by this user only.
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: source.appendingPathComponent(manifestName)))
        for file in manifest.files {
            let to = target.appendingPathComponent(file.path)
            try fm.createDirectory(at: to.deletingLastPathComponent(), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.copyItem(at: source.appendingPathComponent(file.path), to: to)
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: to.path)
        }
        return manifest.files.count
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
