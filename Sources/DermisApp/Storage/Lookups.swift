import Fluent
import Vapor

extension Model where IDValue == UUID {
    /// The row a stored reference names. A missing one fails this request with 404 — never the whole server, as a
    /// force-unwrapped `find(…)!` would.
    static func require(_ id: UUID, on db: any Database) async throws -> Self {
        guard let row = try await find(id, on: db) else {
            throw DomainError.notFound("A record this page needs is missing (\(schema)).")
        }
        return row
    }
}
