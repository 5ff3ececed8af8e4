import NIOConcurrencyHelpers
import NIOPosix
import Vapor

/// Where photos and signatures are decoded: a few threads of their own (never the pool bcrypt signs people in on, nor
/// the event loops), and a bounded queue — when it is full an upload is turned away with 503 and Retry-After rather
/// than piling up files in memory (docs/SECURITY.md R13).
final class ImageDecoding: Sendable {
    private let pool: NIOThreadPool
    private let capacity: Int
    private let inFlight = NIOLockedValueBox(0)

    /// `threads` decodes at a time; up to `waiting` more wait for a thread.
    init(threads: Int = 2, waiting: Int = 8) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        capacity = threads + waiting
    }

    struct Busy: AbortError {
        var status: HTTPResponseStatus { .serviceUnavailable }
        var reason: String { "Dermis is processing many images right now; try the upload again in a moment." }
        var headers: HTTPHeaders { ["Retry-After": "5"] }
    }

    /// Runs `work` on the decoding threads, or throws `Busy` at once when the queue is full.
    func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let admitted = inFlight.withLockedValue { count in
            guard count < capacity else { return false }
            count += 1
            return true
        }
        guard admitted else { throw Busy() }
        defer { inFlight.withLockedValue { $0 -= 1 } }
        return try await pool.runIfActive(work)
    }

    func shutdown() async throws { try await pool.shutdownGracefully() }
}

extension Application {
    private struct ImageDecodingKey: StorageKey { typealias Value = ImageDecoding }

    var imageDecoding: ImageDecoding {
        get {
            guard let decoding = storage[ImageDecodingKey.self] else { fatalError("configure(_:settings:) was not called") }
            return decoding
        }
        set { storage[ImageDecodingKey.self] = newValue }
    }
}

/// Stops the decoding threads with the server.
struct ImageDecodingShutdown: LifecycleHandler {
    func shutdownAsync(_ application: Application) async {
        try? await application.imageDecoding.shutdown()
    }
}
