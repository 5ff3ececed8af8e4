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
    /// does not take another one early.) A folder dated after `now` — the clock stepped back, or it came from another
    /// machine — is not counted, so it neither stops backups nor makes one due every minute.
    func isDue(now: Date) -> Bool {
        guard let newest = Self.complete(in: directory).last(where: { $0.at <= now }) else { return true }
        return now.timeIntervalSince(newest.at) >= Double(hours) * 3600
    }

    /// Where a backup is written until it is complete and verified (then renamed): never counted, never restored.
    static let partialPrefix = ".partial-"
}

extension Backup {
    /// A backup into a new timestamped folder under `directory`, verified, then the oldest complete ones beyond `keep`
    /// removed. A backup that fails or does not verify is removed and nothing older is touched.
    public static func rotate(dataDirectory: String, secretKeyPath: String, into directory: String, keep: Int,
                              now: Date) async throws -> (folder: String, removed: [String]) {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: directory)
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let name = BackupSchedule.name(at: now)
        let folder = root.appendingPathComponent(name).path
        let partial = root.appendingPathComponent(BackupSchedule.partialPrefix + name).path
        guard !fm.fileExists(atPath: folder), !fm.fileExists(atPath: partial) else { throw Failure("--into: \(folder) already exists") }
        // A partial backup a day old was cut off (the process killed mid-copy): it goes. A newer one may be another
        // process's, still being written.
        for stale in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where stale.hasPrefix(BackupSchedule.partialPrefix) {
            if let at = BackupSchedule.instant(of: String(stale.dropFirst(BackupSchedule.partialPrefix.count))), now.timeIntervalSince(at) > 86_400 {
                try await remove(root.appendingPathComponent(stale).path)
            }
        }
        do {
            try await create(dataDirectory: dataDirectory, secretKeyPath: secretKeyPath, to: partial, now: now)
            let problems = try await verify(partial)
            guard problems.isEmpty else { throw Failure("the new backup does not verify: " + problems.joined(separator: "; ")) }
            try fm.moveItem(atPath: partial, toPath: folder)
        } catch {
            try? await remove(partial)
            throw error
        }
        // The oldest beyond `keep` go, never the one just written (a folder dated later than it may sort after it).
        let others = BackupSchedule.complete(in: directory).filter { $0.name != name }
        let removed = others.dropLast(max(0, keep - 1)).map(\.name)
        for old in removed { try await remove(root.appendingPathComponent(old).path) }
        return (folder, removed)
    }

    /// Removes a backup folder on the backup's thread (a folder of photos takes a while).
    private static func remove(_ path: String) async throws {
        try await pool.runIfActive { try FileManager.default.removeItem(atPath: path) }
    }
}

/// Runs the schedule while the server serves: looks once a minute, backs up when due, logs each outcome (never any
/// patient data: folder names are times).
struct BackupRunner: Sendable {
    let schedule: BackupSchedule
    let app: Application
    /// When the last backup failed: the next try waits `retryAfterFailure` (a full disk is not copied to every minute).
    private let failedAt = NIOLockedValueBox<Date?>(nil)
    static let retryAfterFailure: TimeInterval = 15 * 60

    init(schedule: BackupSchedule, app: Application) {
        self.schedule = schedule
        self.app = app
    }

    /// One look: a backup if one is due at the clock's now. Returns the folder written, if any.
    @discardableResult
    func runIfDue() async -> String? {
        let now = app.dermis.clock.now()
        if let failed = failedAt.withLockedValue({ $0 }), now.timeIntervalSince(failed) < Self.retryAfterFailure, now >= failed { return nil }
        guard schedule.isDue(now: now) else { return nil }
        let settings = app.dermis.settings
        do {
            let (folder, removed) = try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath,
                                                            into: schedule.directory, keep: schedule.keep, now: now)
            failedAt.withLockedValue { $0 = nil }
            app.logger.notice("Backup written and verified", metadata: ["folder": "\(folder)", "removed": "\(removed.count)"])
            return folder
        } catch {
            failedAt.withLockedValue { $0 = now }
            app.logger.error("Scheduled backup failed (next try in 15 minutes): \(error)")
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
