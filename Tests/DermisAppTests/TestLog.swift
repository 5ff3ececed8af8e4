import Foundation
import Logging
@testable import DermisApp

/// Captures every log line (debug and above) the process writes, for the canary test of R11.
enum TestLog {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var captured: [String] = []

    private static let bootstrapped: Bool = {
        // The same filter production uses, so this test proves the filter works.
        LoggingSystem.bootstrap { label in PatientSafeLogHandler(wrapping: CapturingHandler(label: label)) }
        return true
    }()

    static func bootstrapOnce() { _ = bootstrapped }

    static func append(_ line: String) { lock.withLock { captured.append(line) } }

    /// Everything logged so far.
    static var text: String { lock.withLock { captured.joined(separator: "\n") } }

    struct CapturingHandler: LogHandler {
        let label: String
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            TestLog.append("\(event.level) \(label) \(event.message) \(all) \(event.error.map { String(describing: $0) } ?? "")")
        }
    }
}
