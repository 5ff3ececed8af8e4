import Vapor

/// What the `dermis` executable asks of the app: serve, or prepare the database and stop.
public enum DermisServer {
    /// Serves HTTP until SIGINT or SIGTERM.
    public static func serve(_ settings: DermisSettings, hostname: String, port: Int) async throws {
        try await withApplication(settings, arguments: ["dermis", "serve"]) { app in
            app.http.server.configuration.hostname = hostname
            app.http.server.configuration.port = port
            try await app.execute()
        }
    }

    /// Opens the database, checks it is durable, migrates it (and seeds the demo when asked), then closes it.
    public static func prepare(_ settings: DermisSettings) async throws {
        try await withApplication(settings, arguments: ["dermis"]) { _ in }
    }

    private static func withApplication(_ settings: DermisSettings, arguments: [String],
                                        _ body: (Application) async throws -> Void) async throws {
        var environment = try Environment.detect(arguments: arguments)
        try LoggingSystem.bootstrap(from: &environment)
        let app = try await Application.make(environment)
        do {
            try await configure(app, settings: settings)
            try await body(app)
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}
