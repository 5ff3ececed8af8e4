import Crypto
import Fluent
import FluentSQLiteDriver
import Foundation
import SQLKit
import Vapor

/// One audited access (the shape of a FHIR AuditEvent): who, when, what, which patient, the outcome, from where.
/// Each row hashes its content and the previous row's hash, so any edit or removal breaks the chain.
final class AuditEvent: Model, @unchecked Sendable {
    static let schema = "audit_event"

    @ID(key: .id) var id: UUID?
    @Field(key: "seq") var seq: Int
    /// The chain the row belongs to: its clinic's, or none (rows with no clinic, and rows written before chains).
    @OptionalField(key: "chain_id") var chainID: UUID?
    /// ISO 8601 UTC with milliseconds, stored as text so the hash is computed over exactly what is stored.
    @Field(key: "at") var at: String
    @OptionalField(key: "actor_id") var actorID: UUID?
    @OptionalField(key: "actor_email") var actorEmail: String?
    @Field(key: "action") var action: String
    @Field(key: "object_type") var objectType: String
    @OptionalField(key: "object_id") var objectID: String?
    @OptionalField(key: "patient_id") var patientID: UUID?
    @Field(key: "outcome") var outcome: String
    @Field(key: "source_ip") var sourceIP: String
    @Field(key: "prev_hash") var prevHash: String
    @Field(key: "hash") var hash: String

    init() {}

    /// The row's fields as stored.
    var record: AuditRecord {
        AuditRecord(seq: seq, chainID: chainID, at: at, actorID: actorID, actorEmail: actorEmail, action: action, objectType: objectType,
                    objectID: objectID, patientID: patientID, outcome: outcome, sourceIP: sourceIP, prevHash: prevHash)
    }

    var computedHash: String { record.computedHash }
}

/// An audit row's stored fields, without the model: what the hash covers, and what appending writes.
struct AuditRecord: Sendable {
    var seq: Int
    var chainID: UUID?
    /// ISO 8601 UTC with milliseconds, stored as text so the hash is computed over exactly what is stored.
    var at: String
    var actorID: UUID?
    var actorEmail: String?
    var action: String
    var objectType: String
    var objectID: String?
    var patientID: UUID?
    var outcome: String
    var sourceIP: String
    var prevHash: String

    /// The text the hash covers: every field, in a fixed order, then the previous hash. A row of a clinic's chain also
    /// covers its chain; rows of the chain with no clinic hash exactly as rows did before chains existed.
    var canonicalText: String {
        let chain = chainID.map { ["chain:" + $0.uuidString] } ?? []
        return ([String(seq)] + chain + [at, actorID?.uuidString ?? "", actorEmail ?? "", action, objectType, objectID ?? "",
                patientID?.uuidString ?? "", outcome, sourceIP, prevHash]).joined(separator: "\u{1f}")
    }

    var computedHash: String { Secrets.digest(canonicalText) }
}

enum AuditAction: String, Sendable, CaseIterable {
    case read, search, create, update, archive, export, access
    case signIn = "sign-in", signOut = "sign-out"
    case staffChange = "staff-change"
}

enum AuditOutcome: String, Sendable {
    case success, denied, notFound = "not-found", invalid, conflict, failure
}

struct CreateAuditEvent: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(AuditEvent.schema)
            .id()
            .field("seq", .int, .required)
            .field("at", .string, .required)
            .field("actor_id", .uuid)
            .field("actor_email", .string)
            .field("action", .string, .required)
            .field("object_type", .string, .required)
            .field("object_id", .string)
            .field("patient_id", .uuid)
            .field("outcome", .string, .required)
            .field("source_ip", .string, .required)
            .field("prev_hash", .string, .required)
            .field("hash", .string, .required)
            .unique(on: "seq")
            .unique(on: "prev_hash")
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        // Append-only in the database itself: UPDATE and DELETE abort (R10).
        if sql.dialect.name == "sqlite" {
            for operation in ["UPDATE", "DELETE"] {
                try await sql.raw("""
                    CREATE TRIGGER audit_event_no_\(unsafeRaw: operation.lowercased()) BEFORE \(unsafeRaw: operation) ON audit_event
                    BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END
                    """).run()
            }
        } else {
            try await sql.raw("""
                CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$
                """).run()
            try await sql.raw("""
                CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event
                FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
                """).run()
        }
    }

    func revert(on database: any Database) async throws {
        try await database.schema(AuditEvent.schema).delete()
        if let sql = database as? any SQLDatabase, sql.dialect.name != "sqlite" {
            try await sql.raw("DROP FUNCTION IF EXISTS audit_event_append_only()").run()
        }
    }
}

extension Request {
    private struct AuditedKey: StorageKey { typealias Value = Bool }
    private struct AuditClinicKey: StorageKey { typealias Value = UUID }

    /// Whether this request has written an audit row; the access layer audits patient-data requests that did not.
    var hasAudited: Bool {
        get { storage[AuditedKey.self] ?? false }
        set { storage[AuditedKey.self] = newValue }
    }

    /// The clinic whose chain this request's rows join: the signed-in staff member's, else the one a patient link or
    /// public page set.
    var auditClinicID: UUID? {
        get { principal?.clinicID ?? storage[AuditClinicKey.self] }
        set { storage[AuditClinicKey.self] = newValue }
    }

    /// A row for this request's caller.
    func auditEntry(_ action: AuditAction, objectType: String, objectID: String?, patientID: UUID?,
                            outcome: AuditOutcome) -> AuditLog.Entry {
        let pathPatient = parameters.get("patientID") as String?
        return AuditLog.Entry(
            chainID: auditClinicID, at: dermis.clock.now(),
            actorID: principal?.userID ?? portal?.patientID,
            actorEmail: principal?.email ?? (portal != nil ? AuditLog.patientActor : nil)
                ?? patientLink.map { "patient-link \($0.id?.uuidString.prefix(8) ?? "")" },
            action: action, objectType: objectType,
            objectID: objectID ?? pathPatient, patientID: patientID ?? pathPatient.flatMap(UUID.init(uuidString:)),
            outcome: outcome, sourceIP: clientAddress)
    }

    /// Writes one audit row for this request's caller. Inside a unit of work the row joins its transaction and commits
    /// with the change, or not at all; outside one (reads, refusals) it is group-committed, and this returns once the
    /// row is durable. A failure throws: a request whose audit row cannot be written fails (docs/SECURITY.md R9).
    func audit(_ action: AuditAction, objectType: String, objectID: String? = nil, patientID: UUID? = nil,
               outcome: AuditOutcome) async throws {
        let entry = auditEntry(action, objectType: objectType, objectID: objectID, patientID: patientID, outcome: outcome)
        if action == .signIn && outcome == .failure { application.metrics.signInFailed() }
        if let work = Writes.current {
            work.record(entry, checkpoints: application.auditCheckpoints) { self.hasAudited = true }
        } else {
            try await application.auditWriter.append([entry])
            hasAudited = true
        }
    }

    /// Refusals of work nested in an enclosing unit of work: they cannot join it (it will roll back), so the access
    /// layer writes them once the request is done.
    private var pendingRefusals: [AuditLog.Entry] {
        get { storage[PendingRefusalsKey.self] ?? [] }
        set { storage[PendingRefusalsKey.self] = newValue }
    }

    private struct PendingRefusalsKey: StorageKey { typealias Value = [AuditLog.Entry] }

    /// Writes the refusals of nested work (see `pendingRefusals`); called outside any unit of work.
    func writePendingRefusals() async throws {
        let pending = pendingRefusals
        guard !pending.isEmpty else { return }
        pendingRefusals = []
        try await application.auditWriter.append(pending)
        hasAudited = true
    }

    /// Runs `body` and audits it. A change (any action but read, search and export) is one unit of work: the body's
    /// writes and the success row commit together, and if either fails both roll back. A read answers only once its
    /// row is durable. A refusal or failure rolls the change back and is audited with what its error means
    /// (404 → not-found, 409 → conflict…); if that row cannot be written either, the request fails with that error.
    /// `subject` names the patient a created object turned out to be.
    func audited<T>(_ action: AuditAction, objectType: String, objectID: String? = nil, patientID: UUID? = nil,
                    subject: @escaping (T) -> UUID? = { _ in nil }, _ body: @escaping () async throws -> T) async throws -> T {
        let succeed: () async throws -> T = {
            let result = try await body()
            let created = subject(result)
            try await self.audit(action, objectType: objectType, objectID: created?.uuidString ?? objectID,
                                 patientID: created ?? patientID, outcome: .success)
            return result
        }
        do {
            if action.isRead { return try await succeed() }
            return try await Writes.transaction(db) { _ in try await succeed() }
        } catch {
            let refusal = auditEntry(action, objectType: objectType, objectID: objectID, patientID: patientID, outcome: AuditOutcome(error))
            if Writes.current == nil {
                try await application.auditWriter.append([refusal])
                hasAudited = true
            } else {
                // The enclosing unit of work may roll back; the refusal is written after the request either way.
                pendingRefusals.append(refusal)
            }
            throw error
        }
    }
}

extension AuditAction {
    /// Actions that change nothing: audited after the fact, by group commit.
    var isRead: Bool { [.read, .search, .export].contains(self) }
}

extension AuditOutcome {
    /// What a refusal or failure means for the audit log.
    init(_ error: any Error) {
        self = switch (error as? any AbortError)?.status.code {
        case 404: .notFound
        case 409, 412, 428: .conflict
        case 401, 403, 410, 429: .denied
        case 400, 413, 415, 422: .invalid
        default: .failure
        }
    }
}
