import DermisCore
import Foundation

/// How one Dermis server is set up: where its data lives, which database, which protocol, which clock.
public struct DermisSettings: Sendable {
    /// Holds the SQLite file and (later) the photo store. `DERMIS_DATA_DIR`, default `./data`.
    public var dataDirectory: String
    /// `postgres://…` switches from embedded SQLite to PostgreSQL.
    public var databaseURL: String?
    /// A clinic's protocol override file; the bundled protocol when nil.
    public var protocolFile: String?
    /// Fills an empty database with the fictional demo clinic.
    public var seedDemo: Bool
    public var clock: any Clock

    public init(dataDirectory: String = "./data", databaseURL: String? = nil, protocolFile: String? = nil,
                seedDemo: Bool = false, clock: any Clock = SystemClock()) {
        self.dataDirectory = dataDirectory
        self.databaseURL = databaseURL
        self.protocolFile = protocolFile
        self.seedDemo = seedDemo
        self.clock = clock
    }

    /// Settings from the environment (`DERMIS_DATA_DIR`, `DATABASE_URL`, `DERMIS_PROTOCOL_FILE`); flags override them.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> DermisSettings {
        DermisSettings(
            dataDirectory: environment["DERMIS_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./data",
            databaseURL: environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 },
            protocolFile: environment["DERMIS_PROTOCOL_FILE"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The protocol this server runs on: the override file when set, else the bundled one. Refuses an invalid file.
    public func loadProtocol() throws -> ClinicalProtocol {
        guard let protocolFile else { return .bundled }
        do {
            guard let data = FileManager.default.contents(atPath: protocolFile) else {
                throw InvalidInput(path: "", problem: "the file cannot be read")
            }
            return try ClinicalProtocol.load(from: data)
        } catch let error as InvalidInput {
            throw ProtocolFileError(path: protocolFile, invalid: error)
        }
    }
}

/// A clinic's protocol file that cannot be used, naming each field and problem.
public struct ProtocolFileError: Error, CustomStringConvertible {
    public let path: String
    public let invalid: InvalidInput

    public var description: String {
        "The protocol file \(path) is invalid:\n" + invalid.issues.map { "  \($0)" }.joined(separator: "\n")
    }
}
