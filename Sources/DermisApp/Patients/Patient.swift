import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A patient of the clinic. Never deleted: archived. Each save bumps `version` (optimistic concurrency, R12).
final class Patient: Model, @unchecked Sendable {
    static let schema = "patient"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    /// The clinic record number staff say aloud and print.
    @Field(key: "mrn") var mrn: String
    @Field(key: "given_name") var givenName: String
    @Field(key: "family_name") var familyName: String
    /// Given and family name folded (case, accents) for search.
    @Field(key: "search_name") var searchName: String
    @Field(key: "date_of_birth") var dateOfBirth: String
    @OptionalField(key: "phone_e164") var phoneE164: String?
    @OptionalField(key: "email") var email: String?
    @OptionalField(key: "fitzpatrick_type") var fitzpatrickType: Int?
    @Field(key: "archived") var archived: Bool
    @Field(key: "version") var version: Int
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date
    @Field(key: "created_by") var createdBy: UUID
    @Field(key: "updated_by") var updatedBy: UUID

    init() {}

    /// Given then family name, as staff read it and the patient types it on a consent.
    var fullName: String { "\(givenName) \(familyName)" }

    /// Inside a unit of work, makes other writers for this patient wait until it commits (PostgreSQL's row lock; SQLite
    /// has one writer already): checks made after it see what the other committed.
    static func lockRow(_ id: UUID, on db: any Database) async throws {
        guard let sql = db as? any SQLDatabase, sql.dialect.name != "sqlite" else { return }
        _ = try await sql.raw("SELECT id FROM \(ident: schema) WHERE id = \(bind: id) FOR UPDATE").all()
    }

    var details: PatientDetails {
        PatientDetails(givenName: givenName, familyName: familyName, dateOfBirth: dateOfBirth, phone: phoneE164,
                       email: email, fitzpatrickType: fitzpatrickType)
    }
}

struct CreatePatient: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(Patient.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("mrn", .string, .required)
            .field("given_name", .string, .required)
            .field("family_name", .string, .required)
            .field("search_name", .string, .required)
            .field("date_of_birth", .string, .required)
            .field("phone_e164", .string)
            .field("email", .string)
            .field("fitzpatrick_type", .int)
            .field("archived", .bool, .required)
            .field("version", .int, .required)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .field("updated_by", .uuid, .required)
            .unique(on: "clinic_id", "mrn")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(Patient.schema).delete()
    }
}

/// The patient registry of one clinic: every query is scoped to the caller's clinic, so another clinic's ids are 404.
struct PatientRegistry {
    private let database: UnitOfWorkDatabase
    let clinicID: UUID

    init(db: any Database, clinicID: UUID) {
        database = UnitOfWorkDatabase(db)
        self.clinicID = clinicID
    }

    var db: any Database { database.current }

    /// One patient of this clinic. The hottest read of the app (every patient page and API call), so it is plain SQL
    /// decoded field by field rather than through the model's reflection.
    func find(_ id: UUID) async throws -> Patient {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        let c = Self.columns
        guard let row = try await sql.select().columns(c.all.map { SQLIdentifier($0) }).from(Patient.schema)
            .where(SQLIdentifier(c.id), .equal, SQLBind(id)).where(SQLIdentifier(c.clinic), .equal, SQLBind(clinicID))
            .limit(1).first() else {
            throw DomainError.notFound("No such patient.")
        }
        let patient = Patient()
        patient.id = try row.decode(column: c.id, as: UUID.self)
        patient.$clinic.id = try row.decode(column: c.clinic, as: UUID.self)
        patient.mrn = try row.decode(column: c.mrn, as: String.self)
        patient.givenName = try row.decode(column: c.givenName, as: String.self)
        patient.familyName = try row.decode(column: c.familyName, as: String.self)
        patient.searchName = try row.decode(column: c.searchName, as: String.self)
        patient.dateOfBirth = try row.decode(column: c.dateOfBirth, as: String.self)
        patient.phoneE164 = try row.decode(column: c.phone, as: String?.self)
        patient.email = try row.decode(column: c.email, as: String?.self)
        patient.fitzpatrickType = try row.decode(column: c.fitzpatrick, as: Int?.self)
        patient.archived = try row.decode(column: c.archived, as: Bool.self)
        patient.version = try row.decode(column: c.version, as: Int.self)
        patient.createdAt = try row.decode(column: c.createdAt, as: Date.self)
        patient.updatedAt = try row.decode(column: c.updatedAt, as: Date.self)
        patient.createdBy = try row.decode(column: c.createdBy, as: UUID.self)
        patient.updatedBy = try row.decode(column: c.updatedBy, as: UUID.self)
        patient._$idExists = true
        return patient
    }

    /// The columns `find` reads, from the model's fields, once.
    private static let columns = Columns()

    private struct Columns {
        let id = Column<Patient>.name(\._$id), clinic = Column<Patient>.name(\.$clinic.$id), mrn = Column<Patient>.name(\.$mrn)
        let givenName = Column<Patient>.name(\.$givenName), familyName = Column<Patient>.name(\.$familyName)
        let searchName = Column<Patient>.name(\.$searchName), dateOfBirth = Column<Patient>.name(\.$dateOfBirth)
        let phone = Column<Patient>.name(\.$phoneE164), email = Column<Patient>.name(\.$email)
        let fitzpatrick = Column<Patient>.name(\.$fitzpatrickType), archived = Column<Patient>.name(\.$archived)
        let version = Column<Patient>.name(\.$version), createdAt = Column<Patient>.name(\.$createdAt)
        let updatedAt = Column<Patient>.name(\.$updatedAt), createdBy = Column<Patient>.name(\.$createdBy)
        let updatedBy = Column<Patient>.name(\.$updatedBy)
        var all: [String] {
            [id, clinic, mrn, givenName, familyName, searchName, dateOfBirth, phone, email, fitzpatrick, archived, version, createdAt,
             updatedAt, createdBy, updatedBy]
        }
    }

    /// A create with the client's own id, which the caller found unused (a record it names is checked with
    /// `sameRecord`). Sent twice at once, the second finds what the first stored: `replayed`.
    func create(_ details: PatientDetails.Valid, clientID: UUID, by actor: UUID, at now: Date) async throws -> (patient: Patient, replayed: Bool) {
        do {
            return (try await create(details, id: clientID, by: actor, at: now), false)
        } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
            // The same request, sent twice at once: the other one stored it.
            guard let stored = try await Patient.find(clientID, on: db) else { throw error }
            return (try sameRecord(stored, details), true)
        }
    }

    /// `stored`, when a client-made id names it and the request carries its very details (the answer to the first
    /// sending was lost); the id naming a record with other details, or another clinic's, is a 409.
    func sameRecord(_ stored: Patient, _ details: PatientDetails.Valid) throws -> Patient {
        let probe = Patient()
        apply(details, to: probe)
        guard stored.$clinic.id == clinicID, stored.givenName == probe.givenName, stored.familyName == probe.familyName,
              stored.dateOfBirth == probe.dateOfBirth, stored.phoneE164 == probe.phoneE164, stored.email == probe.email,
              stored.fitzpatrickType == probe.fitzpatrickType else {
            throw DomainError.conflict("id: already names another patient record; make a new id for a new patient")
        }
        return stored
    }

    /// A new record of this clinic at version 1, not yet stored (no id or record number yet).
    private func newPatient(_ details: PatientDetails.Valid, by actor: UUID, at now: Date) -> Patient {
        let patient = Patient()
        patient.$clinic.id = clinicID
        apply(details, to: patient)
        patient.archived = false
        patient.version = 1
        patient.createdAt = now
        patient.updatedAt = now
        patient.createdBy = actor
        patient.updatedBy = actor
        return patient
    }

    func create(_ details: PatientDetails.Valid, id clientID: UUID? = nil, by actor: UUID, at now: Date) async throws -> Patient {
        let patient = newPatient(details, by: actor, at: now)
        // A short, readable record number; the unique index settles the rare collision by trying again.
        for attempt in 1...5 {
            patient.id = clientID ?? UUID()
            patient.mrn = "DRM-" + String(format: "%06d", Int.random(in: 0...999_999))
            do {
                try await Writes.savepoint(db) { db in try await patient.create(on: db) }
                return patient
            } catch where (error as? any DatabaseError)?.isConstraintFailure == true && attempt < 5 {
                // A client's id already stored is not a record-number collision: the caller sorts it out.
                if let clientID, try await Patient.find(clientID, on: db) != nil { throw error }
                continue
            }
        }
        throw Abort(.internalServerError)
    }

    /// Many new patients at once (an import): one multi-row INSERT per 200, not a model save each (Fluent's reflection
    /// was a quarter of an import's time, scripts/bench-import). A record number taken meanwhile fails the batch's
    /// savepoint; the batch is tried again with new numbers.
    func createMany(_ all: [PatientDetails.Valid], by actor: UUID, at now: Date) async throws -> [Patient] {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        let c = Self.columns
        var created: [Patient] = []
        for start in stride(from: 0, to: all.count, by: 200) {
            let chunk = Array(all[start..<min(start + 200, all.count)])
            for attempt in 1...5 {
                // Numbers not in this batch, then not already taken (a random pick collides often in a large registry).
                var numbers = Set<String>()
                func fresh() -> String {
                    var mrn: String
                    repeat { mrn = "DRM-" + String(format: "%06d", Int.random(in: 0...999_999)) } while !numbers.insert(mrn).inserted
                    return mrn
                }
                var candidates = chunk.map { _ in fresh() }
                for _ in 1...5 {
                    let taken = Set(try await sql.select().column(c.mrn).from(Patient.schema).where(SQLIdentifier(c.clinic), .equal, SQLBind(clinicID))
                        .where(SQLIdentifier(c.mrn), .in, SQLBind.group(candidates)).all().map { try $0.decode(column: c.mrn, as: String.self) })
                    if taken.isEmpty { break }
                    candidates = candidates.map { taken.contains($0) ? fresh() : $0 }
                }
                let patients = zip(chunk, candidates).map { details, mrn -> Patient in
                    let patient = newPatient(details, by: actor, at: now)
                    patient.id = UUID()
                    patient.mrn = mrn
                    patient._$idExists = true
                    return patient
                }
                var insert = sql.insert(into: Patient.schema).columns(c.all)
                for p in patients {
                    insert = insert.values([
                        SQLBind(p.id!), SQLBind(clinicID), SQLBind(p.mrn), SQLBind(p.givenName), SQLBind(p.familyName), SQLBind(p.searchName),
                        SQLBind(p.dateOfBirth), SQLBind(p.phoneE164), SQLBind(p.email), SQLBind(p.fitzpatrickType), SQLBind(false), SQLBind(1),
                        SQLBind(now), SQLBind(now), SQLBind(actor), SQLBind(actor),
                    ] as [any SQLExpression])
                }
                do {
                    try await Writes.savepoint(db) { _ in try await insert.run() }
                    created += patients
                    break
                } catch where (error as? any DatabaseError)?.isConstraintFailure == true && attempt < 5 {
                    continue
                }
            }
        }
        return created
    }

    /// Saves an edit only if nobody saved since `expectedVersion`; 409 otherwise, with nothing written.
    func update(_ id: UUID, with details: PatientDetails.Valid, expectedVersion: Int, by actor: UUID, at now: Date) async throws -> Patient {
        let before = try await find(id)
        try await ConditionalUpdate.versioned(Patient.self, id: id, version: \.$version, expected: expectedVersion, on: db)
            .where(\.$clinic.$id, .equal, clinicID)
            .set(\.$givenName, to: details.givenName)
            .set(\.$familyName, to: details.familyName)
            .set(\.$searchName, to: searchFolded(details.givenName + " " + details.familyName))
            .set(\.$dateOfBirth, to: details.dateOfBirth.description)
            .set(\.$phoneE164, to: details.phoneE164)
            .set(\.$email, to: details.email)
            .set(\.$fitzpatrickType, to: details.fitzpatrickType)
            .set(\.$updatedAt, to: now)
            .set(\.$updatedBy, to: actor)
            .run(orThrow: Self.savedSince)
        // Whoever signed in to the patient's own pages by the old address or number is signed out, and links sent to it
        // no longer work (a mistyped address corrected, a phone passed on).
        if before.email?.lowercased() != details.email?.lowercased() || before.phoneE164 != details.phoneE164 {
            try await PortalSessions.endAll(patientID: id, by: actor, at: now, on: db)
        }
        return try await find(id)
    }

    static let savedSince = DomainError.conflict("Someone saved this patient since you opened it.")

    /// Archives or restores from `expectedVersion` (the version shown, or the one just read), in one conditional update.
    func setArchived(_ id: UUID, _ archived: Bool, expectedVersion: Int? = nil, by actor: UUID, at now: Date) async throws -> Patient {
        let current = try await find(id)
        try await ConditionalUpdate.versioned(Patient.self, id: id, version: \.$version, expected: expectedVersion ?? current.version, on: db)
            .where(\.$clinic.$id, .equal, clinicID)
            .set(\.$archived, to: archived)
            .set(\.$updatedAt, to: now)
            .set(\.$updatedBy, to: actor)
            .run(orThrow: Self.savedSince)
        return try await find(id)
    }

    /// Search by name (any order, accents and case ignored), date of birth, phone, email or record number.
    func search(_ text: String, includeArchived: Bool = false, limit: Int = 50) async throws -> [Patient] {
        var query = Patient.query(on: db).filter(\.$clinic.$id == clinicID)
        if !includeArchived { query = query.filter(\.$archived == false) }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty {
            return try await query.sort(\.$updatedAt, .descending).limit(limit).all()
        }
        if let date = CalendarDate(iso: trimmed) {
            query = query.filter(\.$dateOfBirth == date.description)
        } else if trimmed.contains("@") {
            query = query.filter(\.$email == trimmed.lowercased())
        } else if trimmed.uppercased().hasPrefix("DRM-") {
            query = query.filter(\.$mrn == trimmed.uppercased())
        } else if let phone = PatientDetails.e164(trimmed.hasPrefix("+") || trimmed.hasPrefix("00") ? trimmed : "+" + trimmed),
                  trimmed.filter(\.isNumber).count >= 6, trimmed.allSatisfy({ $0.isNumber || " +-().".contains($0) }) {
            let digits = String(phone.dropFirst())
            query = query.filter(\.$phoneE164 ~~ digits)
            if let ids = try await PatientSearchIndex.candidates(words: [], phone: digits, on: db) {
                guard !ids.isEmpty else { return [] }
                query = query.filter(\.$id ~~ ids)
            }
        } else {
            // The index finds the candidates; the row's own columns confirm each (PatientSearchIndex).
            // A typed % or _ is neither a wildcard nor a letter to find: dropped, alike for the index and the row.
            let words = searchFolded(trimmed).split(separator: " ").map { PatientSearchIndex.escaped(String($0)) }.filter { !$0.isEmpty }
            for word in words { query = query.filter(\.$searchName ~~ word) }
            if let ids = try await PatientSearchIndex.candidates(words: words, phone: nil, on: db) {
                guard !ids.isEmpty else { return [] }
                query = query.filter(\.$id ~~ ids)
            }
        }
        return try await query.sort(\.$familyName).sort(\.$givenName).limit(limit).all()
    }

    private func apply(_ details: PatientDetails.Valid, to patient: Patient) {
        patient.givenName = details.givenName
        patient.familyName = details.familyName
        patient.searchName = searchFolded(details.givenName + " " + details.familyName)
        patient.dateOfBirth = details.dateOfBirth.description
        patient.phoneE164 = details.phoneE164
        patient.email = details.email
        patient.fitzpatrickType = details.fitzpatrickType
    }
}
