import Fluent
import Foundation
import SQLKit

/// Name and phone search that finds without reading every patient: trigrams, so any part of a name of three letters or
/// more is looked up, accent- and case-blind as the folded `search_name` already is.
///
/// - SQLite: an FTS5 table with the trigram tokenizer, `patient_search`, kept in step by triggers on `patient` (so every
///   way a row is written keeps it, a bulk load included). Its rowid is the patient's; the search rechecks each match
///   against the patient row, so an entry gone stale can never show a wrong patient. `ensureComplete` rebuilds it when
///   it does not hold one entry per patient.
/// - PostgreSQL: `pg_trgm` GIN indexes on `search_name` and `phone_e164`, which the plain `LIKE '%…%'` uses.
enum PatientSearchIndex {
    static let table = "patient_search"

    struct Migration: AsyncMigration {
        func prepare(on database: any Database) async throws {
            guard let sql = database as? any SQLDatabase else { return }
            if sql.dialect.name == "sqlite" {
                try await sql.raw("CREATE VIRTUAL TABLE patient_search USING fts5(patient_id UNINDEXED, search_name, phone_e164, tokenize = 'trigram')").run()
                let entry = "INSERT OR REPLACE INTO patient_search (rowid, patient_id, search_name, phone_e164) VALUES (new.rowid, new.id, new.search_name, new.phone_e164)"
                try await sql.raw("CREATE TRIGGER patient_search_insert AFTER INSERT ON patient BEGIN \(unsafeRaw: entry); END").run()
                // Dermis never VACUUMs the live file, so row ids stay put; were they ever to move, an entry is removed only
                // if it is this patient's, and ensureComplete finds the mismatch at the next start.
                try await sql.raw("""
                    CREATE TRIGGER patient_search_update AFTER UPDATE OF search_name, phone_e164 ON patient BEGIN
                    DELETE FROM patient_search WHERE rowid = old.rowid AND patient_id = old.id; \(unsafeRaw: entry); END
                    """).run()
                try await sql.raw("""
                    CREATE TRIGGER patient_search_delete AFTER DELETE ON patient BEGIN
                    DELETE FROM patient_search WHERE rowid = old.rowid AND patient_id = old.id; END
                    """).run()
                try await rebuild(sql)
            } else {
                // pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. A role that may not,
                // on a database where nobody did, gets no index — search still answers, reading the table — and a warning.
                let installed = try await sql.raw("SELECT 1 AS x FROM pg_extension WHERE extname = 'pg_trgm'").first() != nil
                let allowed = try await sql.raw("SELECT has_database_privilege(current_database(), 'CREATE') AS ok").first()?
                    .decode(column: "ok", as: Bool.self) ?? false
                guard installed || allowed else {
                    database.logger.warning("Patient search has no trigram index: this role may not CREATE EXTENSION pg_trgm. Ask the database's owner to run CREATE EXTENSION pg_trgm; CREATE INDEX patient_search_name_trgm ON patient USING gin (search_name gin_trgm_ops); CREATE INDEX patient_phone_trgm ON patient USING gin (phone_e164 gin_trgm_ops)")
                    return
                }
                if !installed { try await sql.raw("CREATE EXTENSION IF NOT EXISTS pg_trgm").run() }
                try await sql.raw("CREATE INDEX patient_search_name_trgm ON patient USING gin (search_name gin_trgm_ops)").run()
                try await sql.raw("CREATE INDEX patient_phone_trgm ON patient USING gin (phone_e164 gin_trgm_ops)").run()
            }
        }

        func revert(on database: any Database) async throws {
            guard let sql = database as? any SQLDatabase else { return }
            if sql.dialect.name == "sqlite" {
                for trigger in ["patient_search_insert", "patient_search_update", "patient_search_delete"] {
                    try await sql.raw("DROP TRIGGER \(unsafeRaw: trigger)").run()
                }
                try await sql.raw("DROP TABLE patient_search").run()
            } else {
                try await sql.raw("DROP INDEX IF EXISTS patient_search_name_trgm").run()
                try await sql.raw("DROP INDEX IF EXISTS patient_phone_trgm").run()
            }
        }
    }

    /// What writes every patient's entry afresh (SQLite); also run on a backup's copy.
    static let rebuildStatements = [
        "DELETE FROM patient_search",
        "INSERT INTO patient_search (rowid, patient_id, search_name, phone_e164) SELECT rowid, id, search_name, phone_e164 FROM patient",
    ]

    static func rebuild(_ sql: any SQLDatabase) async throws {
        for statement in rebuildStatements { try await sql.raw("\(unsafeRaw: statement)").run() }
    }

    /// At start (SQLite): rebuilds the index if it does not hold exactly one entry per patient — rows written before the
    /// index existed, or a copy whose row ids moved. Returns whether it rebuilt.
    @discardableResult
    static func ensureComplete(on database: any Database) async throws -> Bool {
        guard let sql = database as? any SQLDatabase, sql.dialect.name == "sqlite" else { return false }
        let patients = try await sql.raw("SELECT count(*) AS n FROM patient").first()?.decode(column: "n", as: Int.self) ?? 0
        let entries = try await sql.raw("SELECT count(*) AS n FROM patient_search").first()?.decode(column: "n", as: Int.self) ?? 0
        let mismatched = try await sql.raw("""
            SELECT count(*) AS n FROM patient_search s LEFT JOIN patient p ON p.rowid = s.rowid WHERE p.id IS NULL OR p.id <> s.patient_id
            """).first()?.decode(column: "n", as: Int.self) ?? 0
        guard patients != entries || mismatched > 0 else { return false }
        try await Writes.transaction(database) { db in try await rebuild(db as! any SQLDatabase) }
        return true
    }

    /// The most candidates the index hands on; a search matching more (two common letters) reads the table instead.
    static let candidateCap = 2000

    /// The ids of patients whose folded name holds every word and, when given, whose phone holds `phone`, from the index
    /// (SQLite). nil when the index cannot narrow the search: not SQLite, no word of three letters or more (a trigram
    /// index cannot look up shorter ones: it would read every entry before the table is read anyway), or more than
    /// `candidateCap` candidates. `words` and `phone` come already `escaped`. The caller still checks each row, so a
    /// stale entry never shows a wrong patient. Asked apart from the patient query, so SQLite's planner never prefers
    /// walking every patient of the clinic to this short list.
    static func candidates(words: [String], phone: String?, on database: any Database) async throws -> [UUID]? {
        guard let sql = database as? any SQLDatabase, sql.dialect.name == "sqlite",
              words.contains(where: { $0.count >= 3 }) || (phone?.count ?? 0) >= 3 else { return nil }
        var conditions: [any SQLExpression] = words.map { word in
            SQLBinaryExpression(SQLColumn("search_name"), .like, SQLBind("%" + word + "%"))
        }
        if let phone { conditions.append(SQLBinaryExpression(SQLColumn("phone_e164"), .like, SQLBind("%" + phone + "%"))) }
        let rows = try await sql.raw("""
            SELECT patient_id FROM patient_search WHERE \(SQLList(conditions, separator: SQLRaw(" AND "))) LIMIT \(literal: candidateCap + 1)
            """).all()
        guard rows.count <= candidateCap else { return nil }
        return try rows.compactMap { try $0.decode(column: "patient_id", as: String.self) }.compactMap(UUID.init(uuidString:))
    }

    /// `%` and `_` in a typed word are letters, not wildcards (SQLite's LIKE has no escape by default: they are removed).
    static func escaped(_ word: String) -> String { word.replacingOccurrences(of: "%", with: "").replacingOccurrences(of: "_", with: "") }
}
