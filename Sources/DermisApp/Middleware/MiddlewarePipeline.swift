import Vapor

/// Several async middlewares run as one. Vapor bridges each middleware of its own through an `EventLoopFuture`: a new
/// task on the concurrency pool, and a wait back on the event loop, per middleware per request. Here the stages call
/// one another directly, in order, so a request pays that bridge once, however many stages there are.
struct MiddlewarePipeline: AsyncMiddleware {
    let stages: [any AsyncMiddleware]

    init(_ stages: [any AsyncMiddleware]) { self.stages = stages }

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        try await run(from: 0, request, next)
    }

    fileprivate func run(from index: Int, _ request: Request, _ next: any AsyncResponder) async throws -> Response {
        guard index < stages.count else { return try await next.respond(to: request) }
        return try await stages[index].respond(to: request, chainingTo: Stage(pipeline: self, index: index + 1, next: next))
    }

    private struct Stage: AsyncResponder {
        let pipeline: MiddlewarePipeline
        let index: Int
        let next: any AsyncResponder

        func respond(to request: Request) async throws -> Response {
            try await pipeline.run(from: index, request, next)
        }
    }
}
