import ArgumentParser
import DermisApp
import Foundation

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a SQLite data folder while the server runs (database, photos, key, audit checkpoints) with a SHA-256 manifest; or check one.",
        discussion: "On PostgreSQL, back up the database with pg_dump (see the README) and copy the data folder's photos and secret.key.")

    @Option(help: "An empty or new folder to write the backup to.") var to: String?
    @Option(help: "A folder of rotated backups: write a new one in a timestamped folder inside it (dermis-backup-<UTC time>), verify it, then keep the newest --keep.")
    var into: String?
    @Option(help: "With --into: how many complete backups to keep (1–1000).") var keep = 7
    @Option(help: "Check the backup in this folder against its manifest and the database's integrity check; exit 1 naming each problem.")
    var verify: String?
    @OptionGroup var storage: StorageOptions

    func validate() throws {
        guard [to, into, verify].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give one of --to DIR (make a backup), --into DIR (make a rotated one) or --verify DIR (check one)")
        }
        guard (1...1000).contains(keep) else { throw ValidationError("--keep: must be a whole number from 1 to 1000 (got \(keep))") }
    }

    func run() async throws {
        if let verify {
            let problems = try await Backup.verify(verify)
            guard problems.isEmpty else {
                printError("The backup does not verify:\n" + problems.joined(separator: "\n"))
                throw ExitCode(1)
            }
            print("The backup verifies: every file matches its manifest, and the database passes its integrity check.")
            return
        }
        let settings = storage.settings()
        guard settings.databaseURL == nil else {
            printError("DATABASE_URL is set: back up PostgreSQL with pg_dump (see the README), and copy the data folder's photos and secret.key.")
            throw ExitCode(2)
        }
        do {
            if let into {
                let (folder, removed) = try await DermisServer.backup(settings, into: into, keep: keep)
                print("Backed up and verified \(folder); removed \(removed.count) older backup(s) beyond the newest \(keep).")
                return
            }
            let (files, bytes) = try await DermisServer.backup(settings, to: to!)
            print("Backed up \(files) files (\(bytes) bytes) to \(to!). Check it with: dermis backup --verify \(to!)")
        } catch let failure as Backup.Failure {
            printError(failure.description)
            throw ExitCode(1)
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Verify a backup, then copy it into an empty data folder.")

    @Option(help: "The backup folder (made by dermis backup --to).") var from: String
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        let settings = storage.settings()
        do {
            let files = try await Backup.restore(from: from, into: settings.dataDirectory)
            print("Restored \(files) files into \(settings.dataDirectory). Check the audit chain with: dermis verify-audit --data-dir \(settings.dataDirectory)")
        } catch let failure as Backup.Failure {
            printError(failure.description)
            throw ExitCode(1)
        }
    }
}
