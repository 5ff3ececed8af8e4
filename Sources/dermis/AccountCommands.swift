import ArgumentParser
import DermisApp
import DermisCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct CreateAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-admin",
        abstract: "Create an admin account (the first one also creates the clinic). Dermis ships with no accounts.")

    @Option(help: "The admin's email (their sign-in).") var email: String
    @Option(help: "The admin's full name.") var name = "Clinic admin"
    @Option(name: .customLong("clinic-name"), help: "The clinic's name, when the database has none yet.") var clinicName = "My clinic"
    @Option(name: .customLong("time-zone"), help: "The clinic's time zone, when the database has none yet.")
    var timeZone = TimeZone.current.identifier
    @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input instead of the terminal.")
    var passwordStdin = false
    @Flag(name: .customLong("new-clinic"),
          help: "Create another clinic (--clinic-name, --time-zone) in this database with this admin: a chain's next clinic.")
    var newClinic = false
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        let password = try readPassword(fromStandardInput: passwordStdin)
        try await DermisServer.createAdmin(storage.settings(), email: email, name: name, password: password,
                                           clinicName: clinicName, timeZone: timeZone, newClinic: newClinic)
        print("Admin \(email.lowercased()) created. Sign in at /login; you will set up an authenticator app first.")
    }
}

struct CreateToken: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-token", abstract: "Print a new API token for a staff member (stored hashed; revocable from their account page).")

    @Option(help: "The staff member's email.") var email: String
    @Option(help: "What the token is for.") var name = "command line"
    @Option(name: .customLong("expires-days"), help: "Days until it expires (1–365).") var expiresDays = 30
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        print(try await DermisServer.createToken(storage.settings(), email: email, name: name, days: expiresDays))
    }
}

struct VerifyAudit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-audit", abstract: "Check the audit log's hash chains against the data folder's checkpoints; exit 1 naming the first problem.")
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        let (rows, problem, checkpoints) = try await DermisServer.verifyAudit(storage.settings())
        if let problem {
            printError("The audit chain is broken: \(problem)")
            throw ExitCode(1)
        }
        if rows > 0 && checkpoints == 0 {
            printError("Warning: the data folder has no audit-checkpoints.json, so rows removed from the end would not be seen.")
        }
        print("The audit chain is intact (\(rows) rows)" + (checkpoints > 0 ? ", up to the newest row of each checkpointed chain." : "."))
    }
}

/// A password from standard input (one line) or typed at the terminal without echo.
func readPassword(fromStandardInput: Bool) throws -> String {
    if fromStandardInput {
        guard let line = readLine(strippingNewline: true) else { throw InvalidInput(path: "--password-stdin", problem: "no password on standard input") }
        return line
    }
    #if canImport(Glibc)
    guard isatty(STDIN_FILENO) != 0, let typed = getpass("Password: ") else {
        throw InvalidInput(path: "password", problem: "no terminal to type it on; use --password-stdin")
    }
    let first = String(cString: typed)
    guard let again = getpass("Again: "), String(cString: again) == first else {
        throw InvalidInput(path: "password", problem: "the two passwords differ")
    }
    return first
    #else
    throw InvalidInput(path: "password", problem: "use --password-stdin")
    #endif
}
