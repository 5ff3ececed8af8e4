import DermisCore
import Vapor

/// `/api/v1/patients`: the registry as JSON, with the same rules as the pages. Every call is audited.
struct PatientAPIController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let patients = routes.grouped("api", "v1", "patients")
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        patients.get(use: search).access(rule)
        patients.post(use: create).access(rule)
        patients.get(":patientID", use: read).access(rule)
        patients.put(":patientID", use: update).access(rule)
    }

    struct PatientJSON: Content {
        let id: UUID
        let mrn: String
        let givenName: String
        let familyName: String
        let dateOfBirth: String
        let phone: String?
        let email: String?
        let fitzpatrickType: Int?
        let archived: Bool
        let version: Int

        init(_ p: Patient) throws {
            id = try p.requireID()
            mrn = p.mrn
            givenName = p.givenName
            familyName = p.familyName
            dateOfBirth = p.dateOfBirth
            phone = p.phoneE164
            email = p.email
            fitzpatrickType = p.fitzpatrickType
            archived = p.archived
            version = p.version
        }
    }

    struct SearchResult: Content {
        let patients: [PatientJSON]
    }

    func search(req: Request) async throws -> SearchResult {
        let staff = try req.staff()
        let q = (try? req.query.get(String.self, at: "q")) ?? ""
        let archived = try req.optionalQuery(Bool.self, "archived") ?? false
        return try await req.audited(.search, objectType: "Patient") {
            let found = try await PatientRegistry(db: req.db, clinicID: staff.clinicID).search(q, includeArchived: archived)
            return try SearchResult(patients: found.map(PatientJSON.init))
        }
    }

    /// 201 with the new record; with a client-made `id` already stored by the same request, 200 with that record.
    func create(req: Request) async throws -> Response {
        let staff = try req.staff()
        let clientID = try req.clientMadeID()
        // A request sent again finds what the first one stored: the audit log records that as a read, not a second creation.
        let stored = if let clientID { try await Patient.find(clientID, on: req.db) } else { nil as Patient? }
        let (patient, replayed) = try await req.audited(stored == nil ? .create : .read, objectType: "Patient",
                                                        subject: { (created: (Patient, Bool)) in created.0.id }) {
            let details = try req.decodeJSON(PatientDetails.self).validated(today: req.today(in: try await req.clinic()))
            let registry = PatientRegistry(db: req.db, clinicID: staff.clinicID)
            if let stored { return (try registry.sameRecord(stored, details), true) }
            if let clientID { return try await registry.create(details, clientID: clientID, by: staff.userID, at: req.dermis.clock.now()) }
            return (try await registry.create(details, by: staff.userID, at: req.dermis.clock.now()), false)
        }
        let response = try await PatientJSON(patient).encodeResponse(status: replayed ? .ok : .created, for: req)
        response.headers.replaceOrAdd(name: .location, value: "/api/v1/patients/\(try patient.requireID())")
        response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(patient.version)\"")
        return response
    }

    func read(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.patientID()
        return try await req.audited(.read, objectType: "Patient") {
            let patient = try await PatientRegistry(db: req.db, clinicID: staff.clinicID).find(id)
            let response = try await PatientJSON(patient).encodeResponse(for: req)
            response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(patient.version)\"")
            return response
        }
    }

    func update(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.patientID()
        return try await req.audited(.update, objectType: "Patient") {
            let expected = try req.ifMatchVersion()
            let details = try req.decodeJSON(PatientDetails.self).validated(today: req.today(in: try await req.clinic()))
            let patient = try await PatientRegistry(db: req.db, clinicID: staff.clinicID)
                .update(id, with: details, expectedVersion: expected, by: staff.userID, at: req.dermis.clock.now())
            let response = try await PatientJSON(patient).encodeResponse(for: req)
            response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(patient.version)\"")
            return response
        }
    }
}
