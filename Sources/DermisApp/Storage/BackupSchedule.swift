import DermisCore
import Foundation
import NIOConcurrencyHelpers
import Vapor

/// Backups the server takes by itself (SQLite): every `hours` into a timestamped folder under `directory`
/// (`dermis-backup-20261130T120000Z`), each verified once written, keeping the newest `keep` complete ones. The same
/// rotation is `dermis backup --into DIR --keep N`, for a cron job instead.
struct BackupSchedule: Sendable {
    let directory: String
    let hours: Int
    let keep: Int

    static let prefix = "dermis-backup-"

    /// The schedule the settings ask for, or nil; a bad value is refused at start, naming the variable.
    static func configure(_ settings: DermisSettings) throws -> BackupSchedule? {
        guard let directory = settings.backupDirectory else {
            for (variable, value) in [("DERMIS_BACKUP_HOURS", settings.backupHours), ("DERMIS_BACKUP_KEEP", settings.backupKeep)] where value != nil {
                throw InvalidInput(path: variable, problem: "needs DERMIS_BACKUP_DIR, the folder the backups go to")
            }
            return nil
        }
        guard settings.databaseURL == nil else {
            throw InvalidInput(path: "DERMIS_BACKUP_DIR", problem: "backs up SQLite only: on PostgreSQL, schedule pg_dump (see the README)")
        }
        let hours = try whole(settings.backupHours, default: 24, in: 1...168, "DERMIS_BACKUP_HOURS", "hours between backups")
        let keep = try whole(settings.backupKeep, default: 7, in: 1...1000, "DERMIS_BACKUP_KEEP", "backups to keep")
        let data = URL(fileURLWithPath: settings.dataDirectory).standardizedFileURL.path
        let target = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard target != data, !target.hasPrefix(data + "/") else {
            throw InvalidInput(path: "DERMIS_BACKUP_DIR", problem: "must be outside the data folder, so a backup never copies earlier backups")
        }
        return BackupSchedule(directory: directory, hours: hours, keep: keep)
    }

    private static func whole(_ text: String?, default value: Int, in range: ClosedRange<Int>, _ variable: String, _ what: String) throws -> Int {
        guard let text else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw InvalidInput(path: variable, problem: "must be a whole number of \(what) from \(range.lowerBound) to \(range.upperBound) (got '\(text)')")
        }
        return number
    }

    /// The folder name of a backup taken at `instant` (UTC, to the second).
    static func name(at instant: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: instant)
        return prefix + String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// When a rotated backup's folder name says it was taken; nil for any other name.
    static func instant(of name: String) -> Date? {
        guard name.hasPrefix(prefix), name.count == prefix.count + 16 else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.date(from: String(name.dropFirst(prefix.count)))
    }

    /// The complete rotated backups in `directory` (their manifest written last), oldest first. Other folders and files
    /// are never counted, and never removed.
    static func complete(in directory: String) -> [(name: String, at: Date)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            guard let at = instant(of: name),
                  FileManager.default.fileExists(atPath: URL(fileURLWithPath: directory).appendingPathComponent(name)
                    .appendingPathComponent(Backup.manifestName).path) else { return nil }
            return (name, at)
        }.sorted { $0.at < $1.at }
    }

    /// Whether a backup is due at `now`: none yet, or the newest is `hours` old. (Read from the folder, so a restart
    /// does not take another one early.)
    func isDue(now: Date) -> Bool {
        guard let newest = Self.complete(in: directory).last else { return true }
        return now.timeIntervalSince(newest.at) >= Double(hours) * 3600 || newest.at > now
    }
}

extension Backup {
    /// A backup into a new timestamped folder under `directory`, verified, then the oldest complete ones beyond `keep`
    /// removed. A backup that fails or does not verify is removed and nothing older is touched.
    public static func rotate(dataDirectory: String, secretKeyPath: String, into directory: String, keep: Int,
                              now: Date) async throws -> (folder: String, removed: [String]) {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let folder = URL(fileURLWithPath: directory).appendingPathComponent(BackupSchedule.name(at: now)).path
        guard !fm.fileExists(atPath: folder) else { throw Failure("--into: \(folder) already exists") }
        do {
            try await create(dataDirectory: dataDirectory, secretKeyPath: secretKeyPath, to: folder, now: now)
            let problems = try await verify(folder)
            guard problems.isEmpty else { throw Failure("the new backup does not verify: " + problems.joined(separator: "; ")) }
        } catch {
            try? fm.removeItem(atPath: folder)
            throw error
        }
        let complete = BackupSchedule.complete(in: directory)
        let removed = complete.dropLast(keep).map(\.name)
        for name in removed { try fm.removeItem(atPath: URL(fileURLWithPath: directory).appendingPathComponent(name).path) }
        return (folder, removed)
    }
}

/// Runs the schedule while the server serves: looks once a minute, backs up when due, logs each outcome (never any
/// patient data: folder names are times).
struct BackupRunner: Sendable {
    let schedule: BackupSchedule
    let app: Application

    /// One look: a backup if one is due at the clock's now. Returns the folder written, if any.
    @discardableResult
    func runIfDue() async -> String? {
        let now = app.dermis.clock.now()
        guard schedule.isDue(now: now) else { return nil }
        let settings = app.dermis.settings
        do {
            let (folder, removed) = try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath,
                                                            into: schedule.directory, keep: schedule.keep, now: now)
            app.logger.notice("Backup written and verified", metadata: ["folder": "\(folder)", "removed": "\(removed.count)"])
            return folder
        } catch {
            app.logger.error("Scheduled backup failed: \(error)")
            return nil
        }
    }

    func loop(every interval: Duration = .seconds(60)) async {
        while !Task.isCancelled {
            await runIfDue()
            try? await Task.sleep(for: interval)
        }
    }
}
