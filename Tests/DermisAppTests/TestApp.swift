import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// The instant every app test runs at: 2026-11-27 10:00 UTC.
let testNow = Date(timeIntervalSince1970: 1_795_773_600)

/// Runs `test` against the real wiring on a real database: a fresh SQLite file in a temporary data dir,
/// or, when DATABASE_URL is set, that PostgreSQL database reset to an empty schema.
func withDermis(seedDemo: Bool = true, protocolFile: String? = nil,
                _ test: (Application, DermisSettings) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dermis-test-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    var settings = DermisSettings.fromEnvironment()
    settings.dataDirectory = directory.path
    settings.protocolFile = protocolFile
    settings.clock = FixedClock(testNow)
    try await withApp { app in
        try await configure(app, settings: settings)
        if settings.databaseURL != nil {
            try await app.autoRevert()
            try await app.autoMigrate()
        }
        if seedDemo { try await DemoClinic.seedIfEmpty(on: app.db) }
        try await test(app, settings)
    }
}

/// A URL-encoded form body.
func form(_ fields: [(String, String)]) -> ByteBuffer {
    var components = URLComponents()
    components.queryItems = fields.map { URLQueryItem(name: $0.0, value: $0.1) }
    let body = components.percentEncodedQuery!.replacingOccurrences(of: "+", with: "%2B")
    return ByteBuffer(string: body)
}

let formHeaders: HTTPHeaders = ["Content-Type": "application/x-www-form-urlencoded"]

/// App tests share one PostgreSQL database when DATABASE_URL is set, so they run one at a time.
@Suite(.serialized) struct AppTests {}
