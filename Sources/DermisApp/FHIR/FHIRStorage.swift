import Fluent
import FluentSQL
import Foundation
import SQLKit

/// An identifier another system gave a patient (their MRN there, an imported record's id): what a conditional create
/// (`POST /Patient?identifier=system|value`) and a CSV import re-run find the patient by. Unique per clinic.
final class PatientIdentifier: Model, @unchecked Sendable {
    static let schema = "patient_identifier"

    @ID(key: .id) var id: UUID?
    @Field(key: "clinic_id") var clinicID: UUID
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "system") var system: String
    @Field(key: "value") var value: String
    @Field(key: "created_at") var createdAt: Date

    init() {}

    init(clinicID: UUID, patientID: UUID, system: String, value: String, at now: Date) {
        id = UUID()
        self.clinicID = clinicID
        $patient.id = patientID
        self.system = system
        self.value = value
        createdAt = now
    }
}

/// Every version of a patient and of an appointment, kept by the database itself (a trigger on each table), so that
/// FHIR's vread and `_history` answer for every write path — forms, JSON API, FHIR, import — with no path able to
/// forget. A version whose row changed without a new version number (a lapsed hold expiring) keeps its latest content.
enum ResourceHistory {
    static let patientColumns = ["id", "clinic_id", "mrn", "given_name", "family_name", "search_name", "date_of_birth", "phone_e164", "email",
                                 "fitzpatrick_type", "archived", "version", "created_at", "updated_at", "created_by", "updated_by"]
    static let appointmentColumns = ["id", "clinic_id", "location_id", "patient_id", "contact_name", "contact_email", "contact_phone",
                                     "service_id", "zones", "practitioner_id", "room_id", "pen_id", "starts_at", "ends_at", "holds_until",
                                     "status", "source", "confirm_token_hash", "hold_expires_at", "series_id", "notes", "version",
                                     "created_at", "created_by", "updated_at"]

    static func table(_ source: String) -> String { source + "_history" }

    struct Migration: AsyncMigration {
        func prepare(on database: any Database) async throws {
            try await database.schema(PatientIdentifier.schema)
                .id()
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
                .field("system", .string, .required)
                .field("value", .string, .required)
                .field("created_at", .datetime, .required)
                .unique(on: "clinic_id", "system", "value")
                .create()
            guard let sql = database as? any SQLDatabase else { return }
            try await sql.raw("CREATE INDEX patient_identifier_patient ON patient_identifier (patient_id)").run()
            for (source, columns) in [("patient", ResourceHistory.patientColumns), ("appointment", ResourceHistory.appointmentColumns)] {
                let history = ResourceHistory.table(source)
                let list = columns.joined(separator: ", ")
                let new = columns.map { "NEW.\($0)" }.joined(separator: ", ")
                let updates = columns.filter { $0 != "id" && $0 != "version" }.map { "\($0) = EXCLUDED.\($0)" }.joined(separator: ", ")
                let keep = "INSERT INTO \(history) (\(list)) VALUES (\(new)) ON CONFLICT (id, version) DO UPDATE SET \(updates);"
                if sql.dialect.name == "sqlite" {
                    try await sql.raw("CREATE TABLE \(unsafeRaw: history) AS SELECT \(unsafeRaw: list) FROM \(unsafeRaw: source) WHERE 0").run()
                } else {
                    try await sql.raw("CREATE TABLE \(unsafeRaw: history) AS SELECT \(unsafeRaw: list) FROM \(unsafeRaw: source) WITH NO DATA").run()
                }
                try await sql.raw("CREATE UNIQUE INDEX \(unsafeRaw: history)_version ON \(unsafeRaw: history) (id, version)").run()
                try await sql.raw("INSERT INTO \(unsafeRaw: history) (\(unsafeRaw: list)) SELECT \(unsafeRaw: list) FROM \(unsafeRaw: source)").run()
                if sql.dialect.name == "sqlite" {
                    for event in ["INSERT", "UPDATE"] {
                        try await sql.raw("""
                            CREATE TRIGGER \(unsafeRaw: history)_\(unsafeRaw: event.lowercased()) AFTER \(unsafeRaw: event) ON \(unsafeRaw: source)
                            BEGIN \(unsafeRaw: keep) END
                            """).run()
                    }
                } else {
                    try await sql.raw("""
                        CREATE FUNCTION \(unsafeRaw: history)_keep() RETURNS trigger AS $$
                        BEGIN \(unsafeRaw: keep) RETURN NULL; END $$ LANGUAGE plpgsql
                        """).run()
                    try await sql.raw("""
                        CREATE TRIGGER \(unsafeRaw: history) AFTER INSERT OR UPDATE ON \(unsafeRaw: source)
                        FOR EACH ROW EXECUTE FUNCTION \(unsafeRaw: history)_keep()
                        """).run()
                }
            }
        }

        func revert(on database: any Database) async throws {
            guard let sql = database as? any SQLDatabase else { return }
            for source in ["patient", "appointment"] {
                let history = ResourceHistory.table(source)
                if sql.dialect.name == "sqlite" {
                    try await sql.raw("DROP TRIGGER \(unsafeRaw: history)_insert").run()
                    try await sql.raw("DROP TRIGGER \(unsafeRaw: history)_update").run()
                } else {
                    try await sql.raw("DROP TRIGGER \(unsafeRaw: history) ON \(unsafeRaw: source)").run()
                    try await sql.raw("DROP FUNCTION \(unsafeRaw: history)_keep()").run()
                }
                try await sql.raw("DROP TABLE \(unsafeRaw: history)").run()
            }
            try await database.schema(PatientIdentifier.schema).delete()
        }
    }

    /// The kept versions of one record of this clinic, oldest first; empty when there is none.
    static func versions<M: Model>(of model: M.Type, id: UUID, clinicID: UUID, on db: any Database) async throws -> [M] {
        guard let sql = db as? any SQLDatabase else { return [] }
        return try await sql.select().column("*").from(table(M.schema))
            .where("id", .equal, SQLBind(id)).where("clinic_id", .equal, SQLBind(clinicID))
            .orderBy("version").all().map { try $0.decode(model: M.self) }
    }
}

/// Indexes on the patient of every patient-linked table that had none: one patient's records (the patient page,
/// `$everything`, a bulk export's batches) were found by reading the whole table. `scripts/bench-export` showed it: a
/// 100,000-patient export scanned every appointment once per batch of 200 patients.
struct PatientRecordIndexes: AsyncMigration {
    static let tables = ["appointment", "screening", "consent", "treatment_session", "check_in", "outcome_score", "adverse_event"]

    func prepare(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        for table in Self.tables {
            try await sql.raw("CREATE INDEX IF NOT EXISTS \(unsafeRaw: table)_patient ON \(unsafeRaw: table) (patient_id)").run()
        }
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        for table in Self.tables { try await sql.raw("DROP INDEX IF EXISTS \(unsafeRaw: table)_patient").run() }
    }
}

/// Patients of a clinic in id order, for the keyset paging of exports (bulk, CSV): without it each page of 200 sorted
/// the whole registry (perf at 100,000 patients: SQLite's temporary B-tree for ORDER BY on every batch).
struct PatientKeysetIndex: AsyncMigration {
    func prepare(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX IF NOT EXISTS patient_clinic_id ON patient (clinic_id, id)").run()
    }

    func revert(on database: any Database) async throws {
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("DROP INDEX IF EXISTS patient_clinic_id").run()
    }
}
