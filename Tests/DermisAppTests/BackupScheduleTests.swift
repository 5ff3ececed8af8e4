import DermisCore
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// Scheduled backups (`DERMIS_BACKUP_DIR`): due at exactly the interval, each verified, the newest `keep` kept, nothing
/// else in the folder touched, and bad settings refused at start naming the variable. SQLite only (PostgreSQL is refused).
extension AppTests {
    @Suite struct BackupScheduleTests {
        static func folder() -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent("dermis-backups-\(UUID().uuidString)").path
        }

        static func names(_ directory: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        }

        @Test(sqliteOnly) func aBackupIsDueOnceTheNewestIsTheIntervalOldNotASecondBefore() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis(change: { $0.backupDirectory = directory; $0.backupHours = "24" }) { app, settings in
                let runner = BackupRunner(schedule: try #require(try BackupSchedule.configure(settings)), app: app)
                let first = try #require(await runner.runIfDue(), "no backup yet: one is due")
                #expect(first.hasSuffix("/dermis-backup-20261127T100000Z"))
                #expect(try await Backup.verify(first).isEmpty)
                settings.manualClock.advance(by: 24 * 3600 - 1)
                #expect(await runner.runIfDue() == nil, "a second before the interval: not due")
                settings.manualClock.advance(by: 1)
                let second = try #require(await runner.runIfDue(), "the interval reached: due")
                #expect(second.hasSuffix("/dermis-backup-20261128T100000Z"))
                #expect(Self.names(directory) == ["dermis-backup-20261127T100000Z", "dermis-backup-20261128T100000Z"])
            }
        }

        @Test(sqliteOnly) func rotationKeepsTheNewestCompleteOnesAndNothingElseIsTouched() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis(change: { $0.backupDirectory = directory; $0.backupHours = "1"; $0.backupKeep = "2" }) { app, settings in
                // Someone's own folder, and an incomplete backup (no manifest): neither counts, neither is removed.
                let fm = FileManager.default
                try fm.createDirectory(atPath: directory + "/notes", withIntermediateDirectories: true)
                try fm.createDirectory(atPath: directory + "/dermis-backup-20200101T000000Z", withIntermediateDirectories: true)
                let runner = BackupRunner(schedule: try #require(try BackupSchedule.configure(settings)), app: app)
                for _ in 0..<3 {
                    #expect(await runner.runIfDue() != nil)
                    settings.manualClock.advance(by: 3600)
                }
                #expect(Self.names(directory) == ["dermis-backup-20200101T000000Z", "dermis-backup-20261127T110000Z",
                                                  "dermis-backup-20261127T120000Z", "notes"])
            }
        }

        @Test(sqliteOnly) func aFolderDatedInTheFutureNeitherStopsBackupsNorPushesOutTheNewOne() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis(change: { $0.backupDirectory = directory; $0.backupKeep = "1" }) { app, settings in
                // A complete backup from a clock a year ahead (another machine's, or before the clock was corrected).
                let future = try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath,
                                                     into: directory, keep: 1, now: settings.clock.now().addingTimeInterval(365 * 86_400))
                let runner = BackupRunner(schedule: try #require(try BackupSchedule.configure(settings)), app: app)
                let now = try #require(await runner.runIfDue(), "the future folder does not count: a backup is due")
                #expect(FileManager.default.fileExists(atPath: now), "keep 1 keeps the one just written, though another sorts after it")
                #expect(!FileManager.default.fileExists(atPath: future.folder))
                settings.manualClock.advance(by: 60)
                #expect(await runner.runIfDue() == nil, "and not again a minute later")
            }
        }

        @Test(sqliteOnly) func aFailedScheduledBackupIsTriedAgainAfterFifteenMinutesNotBefore() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis(change: { $0.backupDirectory = directory }) { app, settings in
                let runner = BackupRunner(schedule: try #require(try BackupSchedule.configure(settings)), app: app)
                let key = settings.secretKeyPath
                try FileManager.default.moveItem(atPath: key, toPath: key + ".away")  // the backup fails without the key
                #expect(await runner.runIfDue() == nil)
                try FileManager.default.moveItem(atPath: key + ".away", toPath: key)
                settings.manualClock.advance(by: BackupRunner.retryAfterFailure - 1)
                #expect(await runner.runIfDue() == nil, "a second before the retry: nothing")
                settings.manualClock.advance(by: 1)
                #expect(await runner.runIfDue() != nil, "the retry")
                #expect(Self.names(directory).count == 1, "no partial folder left from the failure")
            }
        }

        @Test(sqliteOnly) func aPartialBackupADayOldIsSweptANewerOneIsLeft() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis { _, settings in
                let now = settings.clock.now()
                let old = BackupSchedule.partialPrefix + BackupSchedule.name(at: now.addingTimeInterval(-86_401))
                let recent = BackupSchedule.partialPrefix + BackupSchedule.name(at: now.addingTimeInterval(-3600))
                for name in [old, recent] {
                    try FileManager.default.createDirectory(atPath: directory + "/" + name, withIntermediateDirectories: true)
                }
                let made = try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath,
                                                   into: directory, keep: 7, now: now)
                #expect(Self.names(directory).sorted() == [recent, URL(fileURLWithPath: made.folder).lastPathComponent].sorted())
            }
        }

        @Test(sqliteOnly) func aBackupThatFailsLeavesNoFolderAndRemovesNothingOlder() async throws {
            let directory = Self.folder()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await withDermis { app, settings in
                let kept = try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: settings.secretKeyPath,
                                                   into: directory, keep: 1, now: settings.clock.now())
                settings.manualClock.advance(by: 3600)
                await #expect(throws: Backup.Failure.self) {
                    try await Backup.rotate(dataDirectory: settings.dataDirectory, secretKeyPath: directory + "/no-such.key",
                                            into: directory, keep: 1, now: settings.clock.now())
                }
                #expect(Self.names(directory) == [URL(fileURLWithPath: kept.folder).lastPathComponent])
            }
        }

        @Test(arguments: [
            (["hours": "0"], "DERMIS_BACKUP_HOURS", "from 1 to 168 (got '0')"),
            (["hours": "daily"], "DERMIS_BACKUP_HOURS", "whole number of hours"),
            (["keep": "0"], "DERMIS_BACKUP_KEEP", "from 1 to 1000 (got '0')"),
            (["noDirectory": "", "hours": "6"], "DERMIS_BACKUP_HOURS", "needs DERMIS_BACKUP_DIR"),
            (["insideData": ""], "DERMIS_BACKUP_DIR", "outside the data folder"),
            (["postgres": ""], "DERMIS_BACKUP_DIR", "pg_dump"),
        ])
        func badScheduleSettingsAreRefusedNamingTheVariable(given: [String: String], variable: String, words: String) throws {
            var settings = DermisSettings(dataDirectory: "/srv/dermis/data")
            settings.backupDirectory = given["noDirectory"] != nil ? nil
                : given["insideData"] != nil ? "/srv/dermis/data/backups" : "/srv/dermis/backups"
            settings.backupHours = given["hours"]
            settings.backupKeep = given["keep"]
            if given["postgres"] != nil { settings.databaseURL = "postgres://dermis@localhost/dermis" }
            let error = #expect(throws: InvalidInput.self) { try BackupSchedule.configure(settings) }
            #expect(error?.issues.first?.path == variable)
            #expect(error?.issues.first?.problem.contains(words) == true, "\(String(describing: error))")
        }

        @Test func noBackupDirectoryMeansNoSchedule() throws {
            #expect(try BackupSchedule.configure(DermisSettings(dataDirectory: "/srv/dermis/data")) == nil)
            var settings = DermisSettings(dataDirectory: "/srv/dermis/data")
            settings.backupDirectory = "/srv/dermis/backups"
            let schedule = try #require(try BackupSchedule.configure(settings))
            #expect(schedule.hours == 24 && schedule.keep == 7)
        }
    }
}
