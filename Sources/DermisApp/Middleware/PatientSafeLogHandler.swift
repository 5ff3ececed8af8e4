import Logging

/// Keeps patient data out of the operational log (docs/SECURITY.md R11): Fluent's debug "Running query" lines carry the
/// bound values of every query (names, dates of birth…), so their values are replaced before any handler sees them.
public struct PatientSafeLogHandler: LogHandler {
    /// Metadata that carries query values.
    static let redactedKeys: Set<String> = ["input", "binds", "sql.binds", "filters", "data"]

    private var wrapped: any LogHandler

    public init(wrapping handler: any LogHandler) { wrapped = handler }

    public var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        var safe = event
        if var metadata = event.metadata {
            for key in metadata.keys where Self.redactedKeys.contains(key) { metadata[key] = "[redacted]" }
            safe.metadata = metadata
        }
        let message = "\(event.message)"
        if ["/care/", "/book/confirm/", "/password/", "/unsubscribe/"].contains(where: message.contains) {
            safe.message = "\(Self.redactingLinks(message))"
        }
        wrapped.log(event: safe)
    }

    /// A patient's aftercare link, a booking's confirmation link, a set-password link and an unsubscribe link are
    /// credentials (the last also names a patient): they never reach the log.
    static func redactingLinks(_ text: String) -> String {
        text.replacing(/\/care\/[^\/\s?#]+/, with: "/care/[token]").replacing(/\/book\/confirm\/[^\/\s?#]+/, with: "/book/confirm/[token]")
            .replacing(/\/password\/[^\/\s?#]+/, with: "/password/[token]")
            .replacing(/\/unsubscribe\/[^\s?#]+/, with: "/unsubscribe/[link]")
    }
}
