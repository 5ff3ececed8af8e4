import Fluent
import SQLKit
import Vapor

/// One conditional UPDATE of one row, named by the model's own fields (no column names as strings):
/// `UPDATE … SET … WHERE id = ? AND <conditions>`. When no row matches — it changed since it was read, is in another
/// state, or is not there — it throws the given conflict and writes nothing. The check and the write are one statement,
/// so two requests can never both pass it (docs/ARCHITECTURE.md, "Writing data").
struct ConditionalUpdate<M: Model> where M.IDValue == UUID {
    private var builder: SQLUpdateBuilder

    init(_ type: M.Type, id: UUID, on db: any Database) throws {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        builder = sql.update(M.schema).where(SQLIdentifier(Column<M>.name(\M._$id)), .equal, SQLBind(id))
    }

    /// The versioned update (docs/SECURITY.md R12): only from `expected`, and the version goes up by one.
    static func versioned(_ type: M.Type, id: UUID, version: KeyPath<M, FieldProperty<M, Int>>, expected: Int,
                          on db: any Database) throws -> Self {
        try Self(type, id: id, on: db)
            .where(version, .equal, expected)
            .set(version, to: expected + 1)
    }

    func set<P: QueryableProperty>(_ field: KeyPath<M, P>, to value: P.Value) -> Self where P.Value: Encodable & Sendable {
        var copy = self
        copy.builder = builder.set(SQLIdentifier(Column<M>.name(field)), to: SQLBind(value))
        return copy
    }

    /// Sets a field to an expression of the row itself, e.g. `quantity_remaining - 1`.
    func set<P: QueryableProperty>(_ field: KeyPath<M, P>, adding amount: Int) -> Self {
        var copy = self
        let column = SQLIdentifier(Column<M>.name(field))
        copy.builder = builder.set(column, to: SQLBinaryExpression(left: column, op: SQLBinaryOperator.add, right: SQLBind(amount)))
        return copy
    }

    func `where`<P: QueryableProperty>(_ field: KeyPath<M, P>, _ op: SQLBinaryOperator, _ value: P.Value) -> Self
        where P.Value: Encodable & Sendable {
        var copy = self
        copy.builder = builder.where(SQLIdentifier(Column<M>.name(field)), op, SQLBind(value))
        return copy
    }

    /// A condition that the field is NULL.
    func whereNull<P: QueryableProperty>(_ field: KeyPath<M, P>) -> Self {
        var copy = self
        copy.builder = builder.where(SQLIdentifier(Column<M>.name(field)), .is, SQLLiteral.null)
        return copy
    }

    /// Runs the update; no matching row throws `conflict`.
    func run(orThrow conflict: @autoclosure () -> any Error) async throws {
        let changed = try await builder.returning(SQLIdentifier(Column<M>.name(\M._$id))).all()
        if changed.isEmpty { throw conflict() }
    }
}

/// A model field's column name, from the field itself: SQL built by hand names no column as a string.
enum Column<M: Model> {
    static func name<P: QueryableProperty>(_ field: KeyPath<M, P>) -> String {
        M.path(for: field).map(\.description).joined(separator: "_")
    }
}
