import DermisCore
import Fluent
import Foundation
import Vapor

/// A Bulk Data export a staff member asked for (FHIR Bulk Data Access IG): what, from when, for whom. The files are
/// made as they are downloaded, patient by patient in batches, so memory stays bounded whatever the clinic's size, and
/// any instance of a chain answers (the job lives in the database).
final class BulkExportJob: Model, @unchecked Sendable {
    static let schema = "bulk_export"

    @ID(key: .id) var id: UUID?
    @Field(key: "clinic_id") var clinicID: UUID
    @Field(key: "requested_by") var requestedBy: UUID
    /// `system`, `patients` or `group:<location id>`.
    @Field(key: "scope") var scope: String
    /// The resource types, comma-separated.
    @Field(key: "types") var types: String
    @OptionalField(key: "since") var since: Date?
    @Field(key: "request") var request: String
    @Field(key: "transaction_time") var transactionTime: Date
    @Field(key: "expires_at") var expiresAt: Date

    init() {}

    struct Migration: AsyncMigration {
        func prepare(on database: any Database) async throws {
            try await database.schema(BulkExportJob.schema)
                .id()
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("requested_by", .uuid, .required, .references(StaffUser.schema, .id))
                .field("scope", .string, .required)
                .field("types", .string, .required)
                .field("since", .datetime)
                .field("request", .string, .required)
                .field("transaction_time", .datetime, .required)
                .field("expires_at", .datetime, .required)
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(BulkExportJob.schema).delete()
        }
    }
}

/// Kick-off (`$export` at the base, on Patient, on a Group), status (`/fhir/bulk/:jobID`), NDJSON files and deletion.
struct BulkExportController: RouteCollection {
    enum Scope {
        case system, patients, group(String)
    }

    /// How long a finished export can be downloaded.
    static let lifetime: TimeInterval = 24 * 3600
    /// Patients per batch while a file is written.
    static let batch = 200

    func boot(routes: any RoutesBuilder) throws {
        let bulk = routes.grouped("fhir", "bulk")
        let rule = AccessRule.staff(AccessRule.clinical, audits: "BulkExport")
        bulk.get(":jobID", use: status).access(rule)
        bulk.delete(":jobID", use: cancel).access(rule)
        bulk.get(":jobID", ":file", use: file).access(rule)
    }

    /// The types a scope exports: everything, or the patient compartment.
    static func exportable(_ scope: Scope) -> [String] {
        switch scope {
        case .system: FHIRStore.types.filter { $0 != "Group" }
        case .patients, .group: ["Patient"] + FHIRStore.types.filter { FHIRSearch.definitions($0)["subject"] != nil }
        }
    }

    static func kickOff(_ req: Request, scope: Scope) async throws -> Response {
        let ctx = try FHIRController.Context(req)
        guard AccessRule.clinical.contains(ctx.staff.role) else {
            throw FHIRError(.forbidden, code: "forbidden", "Your role may not do this: an export includes clinical content.")
        }
        guard (req.headers.first(name: "Prefer") ?? "").contains("respond-async") else {
            throw FHIRError(.badRequest, code: "invalid", "A bulk export runs asynchronously: send Prefer: respond-async")
        }
        let items = FHIRController.queryItems(req)
        var types = exportable(scope)
        var since: Date?
        for (name, value) in items {
            switch name {
            case "_outputFormat":
                guard ["application/fhir+ndjson", "application/ndjson", "ndjson"].contains(value) else {
                    throw FHIRError(.badRequest, code: "not-supported", "_outputFormat must be application/fhir+ndjson", expression: "_outputFormat")
                }
            case "_type":
                let asked = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                for type in asked where !types.contains(type) {
                    throw FHIRError(.badRequest, code: "not-supported", "_type '\(type)' cannot be exported here; choose from \(types.joined(separator: ", "))",
                                    expression: "_type")
                }
                types = types.filter(asked.contains)
            case "_since":
                guard let date = FHIRTime.dateTime(value.replacingOccurrences(of: " ", with: "+")) else {
                    throw FHIRError(.badRequest, code: "invalid", "_since must be an instant such as 2026-01-01T00:00:00Z", expression: "_since")
                }
                since = date
            default:
                throw FHIRError(.badRequest, code: "not-supported", "The export parameter '\(name)' is not supported", expression: name)
            }
        }
        var scopeText = "system"
        switch scope {
        case .system: break
        case .patients: scopeText = "patients"
        case let .group(id):
            guard let location = UUID(uuidString: id),
                  try await Location.query(on: req.db).filter(\.$id == location).filter(\.$clinic.$id == ctx.staff.clinicID).count() == 1 else {
                throw FHIRError(.notFound, code: "not-found", "Group/\(id) is not known")
            }
            scopeText = "group:\(location.fhirID)"
        }
        let now = req.dermis.clock.now()
        let job = BulkExportJob()
        job.id = UUID()
        job.clinicID = ctx.staff.clinicID
        job.requestedBy = ctx.staff.userID
        job.scope = scopeText
        job.types = types.joined(separator: ",")
        job.since = since
        job.request = ctx.origin + req.url.string
        job.transactionTime = now
        job.expiresAt = now.addingTimeInterval(lifetime)
        try await req.audited(.export, objectType: "BulkExport", objectID: job.id?.uuidString) {
            try await job.create(on: req.db)
        }
        return Response(status: .accepted, headers: ["Content-Location": "\(ctx.origin)/fhir/bulk/\(job.id!.fhirID)"])
    }

    /// The caller's own, unexpired job; anyone else's is 404.
    static func job(_ req: Request) async throws -> BulkExportJob {
        let staff = try req.staff()
        guard let id = (req.parameters.get("jobID")).flatMap(UUID.init(uuidString:)),
              let job = try await BulkExportJob.find(id, on: req.db), job.clinicID == staff.clinicID, job.requestedBy == staff.userID,
              job.expiresAt > req.dermis.clock.now() else {
            throw FHIRError(.notFound, code: "not-found", "No such export (or it expired)")
        }
        return job
    }

    func status(req: Request) async throws -> Response {
        let job = try await Self.job(req)
        let origin = FHIRController.Context.origin(req)
        let manifest: FHIRValue = [
            "transactionTime": .instant(job.transactionTime),
            "request": .string(job.request),
            "requiresAccessToken": true,
            "output": .array(job.types.split(separator: ",").map { type in
                ["type": .string(String(type)), "url": .string("\(origin)/fhir/bulk/\(job.id!.fhirID)/\(type).ndjson")]
            }),
            "error": [],
        ]
        try await req.audit(.read, objectType: "BulkExport", objectID: job.id?.uuidString, outcome: .success)
        var headers: HTTPHeaders = ["Expires": FHIRController.httpDate(job.expiresAt)]
        headers.replaceOrAdd(name: .contentType, value: "application/json")
        return Response(status: .ok, headers: headers, body: .init(string: manifest.json))
    }

    func cancel(req: Request) async throws -> Response {
        let job = try await Self.job(req)
        try await req.audited(.update, objectType: "BulkExport", objectID: job.id?.uuidString) { try await job.delete(on: req.db) }
        return Response(status: .accepted)
    }

    /// One type's NDJSON, written batch by batch as it is sent; each batch's patients are audited (R9).
    func file(req: Request) async throws -> Response {
        let job = try await Self.job(req)
        let name = req.parameters.get("file") ?? ""
        guard name.hasSuffix(".ndjson"), job.types.split(separator: ",").contains(Substring(name.dropLast(7))) else {
            throw FHIRError(.notFound, code: "not-found", "This export has no file \(name)")
        }
        let type = String(name.dropLast(7))
        let staff = try req.staff()
        let store = FHIRStore(db: req.db, clinicID: job.clinicID, p: req.dermis.clinicalProtocol, origin: FHIRController.Context.origin(req))
        let since = job.since
        let scope = job.scope
        let jobID = job.id!.uuidString
        let body = Response.Body(asyncStream: { writer in
            do {
                func send(_ resources: [FHIRResource]) async throws {
                    let kept = resources.filter { since == nil || $0.lastUpdated >= since! }
                    guard !kept.isEmpty else { return }
                    var text = ""
                    for resource in kept {
                        resource.json.write(into: &text)
                        text += "\n"
                    }
                    // Audited before it leaves: a batch whose rows cannot be written is not sent (R9).
                    let patients = Array(Set(kept.compactMap(\.patientID)))
                    if !patients.isEmpty { try await req.auditMany(.export, objectType: type, objectID: jobID, patientIDs: patients) }
                    try await writer.write(.buffer(ByteBuffer(string: text)))
                }
                let perPatient = type == "Patient" || FHIRSearch.definitions(type)["subject"] != nil
                if !perPatient {
                    if scope == "system" { try await send(store.all(type, patients: nil)) }
                } else {
                    var after: UUID?
                    while true {
                        let batch: [UUID]
                        if scope.hasPrefix("group:"), let location = UUID(uuidString: String(scope.dropFirst(6))) {
                            batch = try await store.groupMembers(location, after: after, limit: Self.batch)
                        } else {
                            var query = Patient.query(on: req.db).filter(\.$clinic.$id == job.clinicID).sort(\.$id).limit(Self.batch).field(\.$id)
                            if let after { query = query.filter(\.$id > after) }
                            batch = try await query.all(\.$id)
                        }
                        guard let last = batch.last else { break }
                        try await send(store.all(type, patients: batch))
                        after = last
                    }
                    // Bookings made from the public page before a record existed belong to no patient.
                    if type == "Appointment", scope == "system" {
                        try await send(store.appointments(Appointment.query(on: req.db).filter(\.$clinic.$id == job.clinicID)
                            .filter(\.$patient.$id == nil).all()))
                    }
                }
                try await writer.write(.end)
            } catch {
                req.logger.error("Bulk export \(jobID) of \(type) for \(staff.userID) failed: \(String(reflecting: Swift.type(of: error)))")
                try await writer.write(.error(error))
            }
        })
        var headers: HTTPHeaders = [:]
        headers.replaceOrAdd(name: .contentType, value: "application/fhir+ndjson")
        return Response(status: .ok, headers: headers, body: body)
    }
}
