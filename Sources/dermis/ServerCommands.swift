import ArgumentParser
import DermisApp
import Foundation

/// Where the data lives and which protocol: flags override DERMIS_DATA_DIR and DERMIS_PROTOCOL_FILE.
struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Folder for the SQLite file and photos (default: DERMIS_DATA_DIR, else ./data).")
    var dataDir: String?

    @OptionGroup var protocolOption: ProtocolOption

    func settings() -> DermisSettings {
        var settings = protocolOption.settings()
        if let dataDir { settings.dataDirectory = dataDir }
        return settings
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Dermis server (SQLite under --data-dir, or PostgreSQL when DATABASE_URL is set).")

    @Option(help: "Address to listen on.") var hostname = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 8080
    @Flag(help: "Fill an empty database with the fictional demo clinic first.") var demo = false
    @OptionGroup var demoOptions: DemoOptions
    @Option(name: .customLong("tls-cert"), help: "Serve HTTPS (TLS 1.2+) with this certificate chain, PEM (default: DERMIS_TLS_CERT).")
    var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "The certificate's private key, PEM (default: DERMIS_TLS_KEY).")
    var tlsKey: String?
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        var settings = storage.settings()
        settings.seedDemo = demo
        demoOptions.apply(to: &settings)
        if let tlsCert { settings.tlsCertificateFile = tlsCert }
        if let tlsKey { settings.tlsKeyFile = tlsKey }
        try await DermisServer.serve(settings, hostname: hostname, port: port)
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fill an empty database with the fictional demo clinic.")
    @OptionGroup var storage: StorageOptions
    @OptionGroup var demoOptions: DemoOptions

    func run() async throws {
        var settings = storage.settings()
        settings.seedDemo = true
        demoOptions.apply(to: &settings)
        try await DermisServer.prepare(settings)
        print("The demo clinic is ready. Run: dermis serve")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or update the database schema, then exit.")
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        try await DermisServer.prepare(storage.settings())
        print("The database is up to date.")
    }
}

/// How the demo clinic is filled: with or without its three months of history, from which seed.
struct DemoOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Give the demo clinic three months of fictional history (patients, charts, photos, bookings).")
    var history = true
    @Option(help: "The seed the demo's history is drawn from (the same seed and day give the same clinic).") var seed: UInt64?

    func apply(to settings: inout DermisSettings) {
        settings.demoHistory = history
        if let seed { settings.demoSeed = seed }
    }
}
