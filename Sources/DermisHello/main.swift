import NIOCore
import NIOPosix
import Vapor

// The ceiling for scripts/bench: the bare Vapor app the `dermis` server is built on, one "hello" route, no middleware
// at all, same release build flags and event loops. Dermis's figures are read as fractions of this one's in the same run.
//   dermis-hello --port 8090
var port = 8090
if let index = CommandLine.arguments.firstIndex(of: "--port"), index + 1 < CommandLine.arguments.count, let given = Int(CommandLine.arguments[index + 1]) {
    port = given
}
// As Vapor's template does (and `dermis`): concurrency runs on the event loops.
NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
// Vapor reads commands from the environment's arguments: it gets none, so it serves.
let app = try await Application.make(Environment(name: "production", arguments: ["dermis-hello"]), .singleton)
app.middleware = Middlewares()
app.logger.logLevel = .warning
app.http.server.configuration.hostname = "127.0.0.1"
app.http.server.configuration.port = port
app.get("hello") { _ in "hello" }
try await app.execute()
try await app.asyncShutdown()
