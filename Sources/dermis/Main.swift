import ArgumentParser
import DermisApp
import DermisCore
import Foundation
import NIOCore
import NIOPosix

/// Runs the command; bad input of any kind — flags, JSON, ids, dates — exits 2 with its message on stderr.
@main
enum Main {
    static func main() async {
        // Swift concurrency runs its jobs on the server's event loops rather than a second thread pool, as Vapor's own
        // template does: an async route handler then needs no thread hand-off on the way in or out (issue 13's profile).
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        do {
            var command = try DermisCommand.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let invalid as InvalidInput {
            printError(invalid.description)
            exit(2)
        } catch let refused as ProtocolFileError {
            printError(refused.description)
            exit(2)
        } catch {
            let code = DermisCommand.exitCode(for: error)
            if code == .success {
                print(DermisCommand.fullMessage(for: error))
                exit(0)
            }
            printError(DermisCommand.fullMessage(for: error))
            exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

struct DermisCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dermis",
        abstract: "Dermis: the microneedling clinic system.",
        subcommands: [Serve.self, Demo.self, Migrate.self, CreateAdmin.self, CreateToken.self, VerifyAudit.self, BackupCommand.self, RestoreCommand.self,
                      Screen.self, Plan.self, ProtocolCommand.self])
}

/// Options every command that touches the protocol shares.
struct ProtocolOption: ParsableArguments {
    @Option(name: .customLong("protocol"), help: "A clinic's protocol override file (default: DERMIS_PROTOCOL_FILE, else the bundled protocol).")
    var file: String?

    /// The environment's settings with this flag applied.
    func settings() -> DermisSettings {
        var settings = DermisSettings.fromEnvironment()
        if let file { settings.protocolFile = file }
        return settings
    }

    func load() throws -> ClinicalProtocol {
        try settings().loadProtocol()
    }
}

/// Reads a whole file, or standard input for `-`.
func readInput(_ path: String, flag: String) throws -> Data {
    if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw InvalidInput(path: flag, problem: "cannot read the file '\(path)'")
    }
    return data
}

/// Today where this clinic is; `DERMIS_TODAY` fixes it for reproducible reports and tests.
func today() throws -> CalendarDate {
    if let fixed = ProcessInfo.processInfo.environment["DERMIS_TODAY"], !fixed.isEmpty {
        guard let date = CalendarDate(iso: fixed) else {
            throw InvalidInput(path: "DERMIS_TODAY", problem: "'\(fixed)' is not a real date (YYYY-MM-DD)")
        }
        return date
    }
    return CalendarDate(SystemClock().now(), in: .current)
}
