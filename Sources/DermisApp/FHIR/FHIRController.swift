import DermisCore
import Fluent
import Foundation
import Vapor

/// An error as FHIR reports it: an OperationOutcome with the HTTP status, the issue type and, where a field is at
/// fault, its FHIRPath expression.
struct FHIRError: AbortError {
    let status: HTTPResponseStatus
    let code: String
    let message: String
    let expression: String?
    var headers: HTTPHeaders = [:]

    init(_ status: HTTPResponseStatus, code: String, _ message: String, expression: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.expression = expression
    }

    var reason: String { message }

    static func outcome(severity: String = "error", code: String, _ message: String, expression: String? = nil) -> FHIRValue {
        ["resourceType": "OperationOutcome",
         "issue": [["severity": .string(severity), "code": .string(code), "diagnostics": .string(message),
                    "expression": expression.map { [.string($0)] }]]]
    }

    /// Any error a FHIR route throws, as an OperationOutcome response.
    static func response(for error: any Error, status: HTTPResponseStatus, message: String) -> Response {
        var issues: [FHIRValue] = []
        if let fhir = error as? FHIRError {
            issues = [["severity": "error", "code": .string(fhir.code), "diagnostics": .string(fhir.message),
                       "expression": fhir.expression.map { [.string($0)] }]]
        } else if let invalid = error as? InvalidInput {
            issues = invalid.issues.map { ["severity": "error", "code": "invalid", "diagnostics": .string("\($0.path): \($0.problem)"),
                                           "expression": $0.path.isEmpty ? nil : [.string($0.path)]] }
        } else {
            let code = switch status.code {
            case 401: "login"
            case 403: "forbidden"
            case 404, 410: "not-found"
            case 409: "conflict"
            case 412: "conflict"
            case 413: "too-costly"
            case 415, 405: "not-supported"
            case 429: "throttled"
            case 400..<500: "invalid"
            default: "exception"
            }
            issues = [["severity": "error", "code": .string(code), "diagnostics": .string(message)]]
        }
        let body: FHIRValue = ["resourceType": "OperationOutcome", "issue": .array(issues)]
        var headers = (error as? any AbortError)?.headers ?? [:]
        headers.replaceOrAdd(name: .contentType, value: FHIRController.contentType)
        if status == .unauthorized { headers.replaceOrAdd(name: .wwwAuthenticate, value: "Bearer realm=\"dermis\"") }
        return Response(status: status, headers: headers, body: .init(string: body.json))
    }
}

/// HL7 FHIR R4 at `/fhir/R4` over the clinic's own records (docs/FHIR.md): read, vread, history, search, create and
/// update of Patient and Appointment through the same rules as the app, `$everything` and Bulk Data `$export`.
struct FHIRController: RouteCollection {
    static let contentType = "application/fhir+json; charset=utf-8"
    static let base: [PathComponent] = ["fhir", "R4"]

    func boot(routes: any RoutesBuilder) throws {
        let fhir = routes.grouped(Self.base)
        // The CapabilityStatement is public, as clients ask it before they authenticate.
        fhir.get("metadata", use: metadata).access(.open)
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "FHIR")
        fhir.get(":type", use: typeLevel).access(rule)
        fhir.post(":type", use: create).access(rule)
        fhir.post(":type", "_search", use: searchByPost).access(rule)
        fhir.get(":type", ":id", use: instanceLevel).access(rule)
        fhir.put(":type", ":id", use: update).access(rule)
        // The router does not backtrack from a constant to a parameter: `_history` has its own route.
        fhir.get(":type", ":id", "_history", use: history).access(rule)
        fhir.get(":type", ":id", "_history", ":version", use: vread).access(rule)
        fhir.get(":type", ":id", ":operation", use: instanceOperation).access(rule)
        try routes.register(collection: BulkExportController())
    }

    // MARK: Context

    struct Context {
        let req: Request
        let staff: Principal
        let store: FHIRStore
        /// `http(s)://host[:port]` as the client reached us.
        let origin: String
        var base: String { origin + "/fhir/R4" }

        init(_ req: Request) throws {
            self.req = req
            staff = try req.staff()
            origin = Self.origin(req)
            store = FHIRStore(db: req.db, clinicID: staff.clinicID, p: req.dermis.clinicalProtocol, origin: origin)
        }

        /// The configured public address (DERMIS_PUBLIC_URL) when there is one — never a Host header a cache could be
        /// poisoned with — else the host the client named (links must lead back to where the client is, FHIR.md).
        static func origin(_ req: Request) -> String {
            if let configured = req.dermis.settings.publicURL, let url = URLComponents(string: configured), let host = url.host {
                return "\(url.scheme ?? "https")://\(host)\(url.port.map { ":\($0)" } ?? "")"
            }
            let host = req.headers.first(name: .host) ?? "localhost"
            return "\(req.dermis.settings.servesHTTPS ? "https" : "http")://\(host)"
        }

        /// The type of the path, known and allowed to this role; else 404 or 403 as an OperationOutcome.
        func type(_ name: String?) throws -> String {
            guard let name, FHIRStore.types.contains(name) else {
                throw FHIRError(.notFound, code: "not-supported", "Dermis serves no resource type '\(name ?? "")'. It serves \(FHIRStore.types.joined(separator: ", ")).")
            }
            try allow(name)
            return name
        }

        func allow(_ type: String) throws {
            if FHIRStore.clinicalTypes.contains(type), !AccessRule.clinical.contains(staff.role) {
                throw FHIRError(.forbidden, code: "forbidden", "Your role may not do this: \(type) is clinical content.")
            }
        }

        func audit(_ action: AuditAction, _ type: String, id: String?, patients: [UUID?]) async throws {
            let distinct = Array(Set(patients.compactMap { $0 }))
            if distinct.isEmpty {
                try await req.audit(action, objectType: type, objectID: id, outcome: .success)
            } else {
                try await req.auditMany(action, objectType: type, objectID: id, patientIDs: distinct)
            }
        }
    }

    // MARK: Responses

    static func respond(_ value: FHIRValue, status: HTTPResponseStatus = .ok, headers extra: HTTPHeaders = [:]) -> Response {
        var headers = extra
        headers.replaceOrAdd(name: .contentType, value: contentType)
        return Response(status: status, headers: headers, body: .init(string: value.json))
    }

    static func respond(_ resource: FHIRResource, status: HTTPResponseStatus = .ok, location: String? = nil, req: Request) -> Response {
        var headers: HTTPHeaders = [:]
        headers.replaceOrAdd(name: .eTag, value: resource.etag)
        headers.replaceOrAdd(name: .lastModified, value: httpDate(resource.lastUpdated))
        if let location { headers.replaceOrAdd(name: .location, value: location) }
        switch preferredReturn(req) {
        case "minimal": 
            headers.replaceOrAdd(name: .contentType, value: contentType)
            return Response(status: status, headers: headers)
        case "OperationOutcome":
            return respond(FHIRError.outcome(severity: "information", code: "informational", "\(resource.type)/\(resource.id) version \(resource.versionID)"),
                           status: status, headers: headers)
        default:
            return respond(resource.json, status: status, headers: headers)
        }
    }

    static func preferredReturn(_ req: Request) -> String? {
        guard let prefer = req.headers.first(name: "Prefer") else { return nil }
        for part in prefer.split(separator: ";").flatMap({ $0.split(separator: ",") }) {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == "return" { return String(pair[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    static func lenient(_ req: Request) -> Bool {
        (req.headers.first(name: "Prefer") ?? "").contains("handling=lenient")
    }

    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    /// Whether the client already holds this version (If-None-Match: W/"3", "3" or a bare 3): then 304.
    static func notModified(_ req: Request, _ resource: FHIRResource) -> Bool {
        guard let header = req.headers.first(name: .ifNoneMatch) else { return false }
        return header.split(separator: ",").contains { Request.version(inTag: String($0)) == resource.versionID }
    }


    // MARK: Capability

    func metadata(req: Request) async throws -> Response {
        Self.respond(Capability.statement(origin: Context.origin(req), p: req.dermis.clinicalProtocol))
    }

    // MARK: Type level: search, and `$export` at the base

    func typeLevel(req: Request) async throws -> Response {
        let name = req.parameters.get("type")
        if name == "$export" { return try await BulkExportController.kickOff(req, scope: .system) }
        let ctx = try Context(req)
        return try await search(ctx, type: try ctx.type(name), items: Self.queryItems(req))
    }

    func searchByPost(req: Request) async throws -> Response {
        let ctx = try Context(req)
        let type = try ctx.type(req.parameters.get("type"))
        var items = Self.queryItems(req)
        if let body = req.body.string, !body.isEmpty {
            guard let form = URLComponents(string: "?" + body.replacingOccurrences(of: "+", with: "%20"))?.queryItems else {
                throw FHIRError(.badRequest, code: "invalid", "The body of _search must be form-encoded search parameters")
            }
            items += form.map { ($0.name, $0.value ?? "") }
        }
        return try await search(ctx, type: type, items: items)
    }

    static func queryItems(_ req: Request) -> [(String, String)] {
        guard let query = req.url.query else { return [] }
        // `+` means a space in a query string, except in a FHIR date's zone, which FHIRSearch reads either way.
        return (URLComponents(string: "?" + query.replacingOccurrences(of: "+", with: "%2B"))?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
    }

    func search(_ ctx: Context, type: String, items: [(String, String)]) async throws -> Response {
        let query = try FHIRSearch.parse(type, items, lenient: Self.lenient(ctx.req))
        if let patient = query.patient, !(try await ctx.store.patientExists(patient)) {
            // Another clinic's or a made-up patient: nothing, as if it had no records.
            try await ctx.audit(.search, type, id: nil, patients: [])
            return Self.respond(Bundles.searchset(ctx, type: type, query: query, total: 0, page: [], included: []))
        }
        var total: Int
        var page: [FHIRResource]
        if type == "Patient" {
            let sql = try FHIRPatientSearch(db: ctx.req.db, clinicID: ctx.staff.clinicID).query(query.criteria)
            total = try await sql.count()
            page = query.summaryCount || query.count == 0 ? [] : try await ctx.store.patients(
                sql.sort(\.$familyName).sort(\.$givenName).sort(\.$id).range(query.offset..<(query.offset + query.count)).all())
        } else {
            let all = try await Self.candidates(ctx, type: type, query: query).filter { FHIRSearch.matches($0, query.criteria) }
            total = all.count
            page = query.summaryCount ? [] : Array(all.dropFirst(query.offset).prefix(query.count))
        }
        let included = try await Self.included(ctx, page, query.includes)
        try await ctx.audit(.search, type, id: nil, patients: (page + included).map(\.patientID))
        return Self.respond(Bundles.searchset(ctx, type: type, query: query, total: total, page: page, included: included))
    }

    /// What a search of a type other than Patient filters in memory: one patient's records, or (Appointment) a date
    /// range of at most 92 days read by SQL, or a type that is small by nature (staff, locations, devices…). A search
    /// that would read a whole clinical table is refused: `$export` is the way to everything.
    static func candidates(_ ctx: Context, type: String, query: FHIRSearch.Query) async throws -> [FHIRResource] {
        if let patient = query.patient { return try await ctx.store.all(type, patient: patient) }
        if type == "Appointment" {
            guard let (lo, hi) = FHIRSearch.dateBounds(query.criteria), hi.timeIntervalSince(lo) <= FHIRSearch.maxAppointmentDays * 86_400 else {
                throw FHIRError(.badRequest, code: "too-costly",
                                "Search Appointment by one patient, or by a date range of at most \(Int(FHIRSearch.maxAppointmentDays)) days (date=ge…&date=lt…)",
                                expression: "date")
            }
            return try await ctx.store.appointments(Appointment.query(on: ctx.req.db).filter(\.$clinic.$id == ctx.staff.clinicID)
                .filter(\.$startsAt < hi).filter(\.$endsAt > lo).sort(\.$startsAt).all())
        }
        if type == "Provenance", let target = query.criteria.first(where: { $0.name == "target" && $0.values.count == 1 }),
           let chart = UUID(uuidString: String(target.values[0].split(separator: "/").last ?? "")) {
            return try await ctx.store.all(type, patient: nil, id: chart)  // one signed chart's versions
        }
        if FHIRStore.clinicalTypes.contains(type) {
            // `_id` alone names one record; read it so.
            if let ids = query.criteria.first(where: { $0.name == "_id" })?.values, ids.count <= 100 {
                var found: [FHIRResource] = []
                for id in ids { if let r = try await ctx.store.read(type, id) { found.append(r) } }
                return found
            }
            throw FHIRError(.badRequest, code: "too-costly", "Search \(type) by one patient (patient=…) or by _id; $export gives the whole clinic",
                            expression: "patient")
        }
        return try await ctx.store.all(type, patient: nil)
    }

    /// The resources `_include` asks for that the page's matches reference (each once, none of them a match already).
    static func included(_ ctx: Context, _ page: [FHIRResource], _ includes: [(source: String, parameter: String, target: String?)]) async throws -> [FHIRResource] {
        var wanted: [String] = []
        for include in includes {
            for resource in page {
                for case let .reference(reference) in resource.index[include.parameter] ?? [] {
                    let type = String(reference.split(separator: "/").first ?? "")
                    if include.target == nil || include.target == type, !wanted.contains(reference),
                       !page.contains(where: { $0.reference == reference }) {
                        wanted.append(reference)
                    }
                }
            }
        }
        var found: [FHIRResource] = []
        for reference in wanted {
            let parts = reference.split(separator: "/").map(String.init)
            guard parts.count == 2, FHIRStore.types.contains(parts[0]) else { continue }
            try ctx.allow(parts[0])
            if let resource = try await ctx.store.read(parts[0], parts[1]) { found.append(resource) }
        }
        return found
    }

    // MARK: Instance level: read, `$export` of a Group, `$everything`

    func instanceLevel(req: Request) async throws -> Response {
        let typeName = req.parameters.get("type"), id = req.parameters.get("id") ?? ""
        if id == "$export" {
            guard typeName == "Patient" else { throw FHIRError(.notFound, code: "not-supported", "$export runs at the base, on Patient or on a Group") }
            return try await BulkExportController.kickOff(req, scope: .patients)
        }
        let ctx = try Context(req)
        let type = try ctx.type(typeName)
        guard let resource = try await ctx.store.read(type, id) else {
            throw FHIRError(.notFound, code: "not-found", "\(type)/\(id) is not known")
        }
        try await ctx.audit(.read, type, id: id, patients: [resource.patientID])
        if Self.notModified(req, resource) {
            return Response(status: .notModified, headers: ["ETag": resource.etag])
        }
        return Self.respond(resource, req: req)
    }

    func instanceOperation(req: Request) async throws -> Response {
        let typeName = req.parameters.get("type"), id = req.parameters.get("id") ?? "", operation = req.parameters.get("operation")
        switch (typeName, operation) {
        case ("Group", "$export"):
            return try await BulkExportController.kickOff(req, scope: .group(id))
        case ("Patient", "$everything"):
            return try await everything(req, id: id)
        default:
            throw FHIRError(.notFound, code: "not-supported", "Unknown operation '\(operation ?? "")' on \(typeName ?? "")")
        }
    }

    func history(req: Request) async throws -> Response {
        let ctx = try Context(req)
        let type = try ctx.type(req.parameters.get("type"))
        let id = req.parameters.get("id") ?? ""
        guard let versions = try await ctx.store.history(type, id) else {
            throw FHIRError(.notFound, code: "not-supported", "Dermis keeps no history of \(type); read gives the current version")
        }
        guard !versions.isEmpty else { throw FHIRError(.notFound, code: "not-found", "\(type)/\(id) is not known") }
        try await ctx.audit(.read, type, id: id, patients: [versions[0].patientID])
        return Self.respond(Bundles.history(ctx, type: type, id: id, versions: versions))
    }

    func vread(req: Request) async throws -> Response {
        let ctx = try Context(req)
        let type = try ctx.type(req.parameters.get("type"))
        let id = req.parameters.get("id") ?? ""
        guard let wanted = Int(req.parameters.get("version") ?? "") else {
            throw FHIRError(.notFound, code: "not-found", "A version is a whole number")
        }
        if let versions = try await ctx.store.history(type, id) {
            guard let resource = versions.first(where: { $0.versionID == wanted }) else {
                throw FHIRError(.notFound, code: "not-found", "\(type)/\(id) has no version \(wanted)")
            }
            try await ctx.audit(.read, type, id: id, patients: [resource.patientID])
            return Self.respond(resource, req: req)
        }
        // Types without kept history: the current version only.
        guard let resource = try await ctx.store.read(type, id), resource.versionID == wanted else {
            throw FHIRError(.notFound, code: "not-found", "\(type)/\(id) has no version \(wanted) (Dermis keeps only the current version of a \(type))")
        }
        try await ctx.audit(.read, type, id: id, patients: [resource.patientID])
        return Self.respond(resource, req: req)
    }

    /// Everything about one patient: the Patient and every resource in their compartment, plus the practitioners,
    /// locations, devices and clinic they reference. Clinical content: practitioners and admins only.
    func everything(_ req: Request, id: String) async throws -> Response {
        let ctx = try Context(req)
        guard AccessRule.clinical.contains(ctx.staff.role) else {
            throw FHIRError(.forbidden, code: "forbidden", "Your role may not do this: $everything includes clinical content.")
        }
        guard let patientID = UUID(uuidString: id), try await ctx.store.patientExists(patientID) else {
            throw FHIRError(.notFound, code: "not-found", "Patient/\(id) is not known")
        }
        var resources = try await ctx.store.all("Patient", patient: patientID)
        for type in FHIRStore.types where FHIRSearch.definitions(type)["subject"] != nil {
            resources += try await ctx.store.all(type, patient: patientID)
        }
        var referenced: [String] = []
        for resource in resources {
            for values in resource.index.values {
                for case let .reference(reference) in values where !reference.hasPrefix("Patient/") && !referenced.contains(reference) {
                    referenced.append(reference)
                }
            }
        }
        let clinic = try await ctx.store.all("Organization", patient: nil)
        for reference in referenced {
            let parts = reference.split(separator: "/").map(String.init)
            if parts.count == 2, !resources.contains(where: { $0.reference == reference }),
               let resource = try await ctx.store.read(parts[0], parts[1]) { resources.append(resource) }
        }
        resources += clinic
        try await ctx.audit(.export, "Patient", id: patientID.fhirID, patients: [patientID])
        return Self.respond(Bundles.searchset(ctx, type: "Patient", query: .init(), total: resources.count, page: resources, included: [],
                                              selfPath: "Patient/\(patientID.fhirID)/$everything"))
    }

    // MARK: Create and update

    /// The body of a create or update, checked: JSON, a FHIR media type, the path's resource type.
    static func body(_ req: Request, type: String) throws -> FHIRValue {
        let mediaType = req.headers.contentType.map { "\($0.type)/\($0.subType)".lowercased() }
        guard let mediaType, ["application/fhir+json", "application/json", "application/json+fhir"].contains(mediaType) else {
            throw FHIRError(.unsupportedMediaType, code: "not-supported",
                            "Send the resource as application/fhir+json (or application/json), not \(req.headers.first(name: .contentType) ?? "no Content-Type")")
        }
        guard let buffer = req.body.data, buffer.readableBytes > 0 else {
            throw FHIRError(.badRequest, code: "invalid", "The request has no body: send the \(type) resource")
        }
        let value = try FHIRValue.parse(Data(buffer: buffer))
        guard value.isObject else { throw FHIRError(.badRequest, code: "invalid", "The body must be a JSON object (a \(type) resource)") }
        guard value["resourceType"]?.stringValue == type else {
            throw FHIRError(.badRequest, code: "invalid",
                            "resourceType must be \(type) at this address, not \(value["resourceType"]?.json ?? "missing")", expression: "resourceType")
        }
        return value
    }

    func create(req: Request) async throws -> Response {
        let ctx = try Context(req)
        let type = try ctx.type(req.parameters.get("type"))
        guard FHIRWrites.writable.contains(type) else {
            throw FHIRError(.methodNotAllowed, code: "not-supported", "\(type) is read-only over FHIR; Dermis creates Patient and Appointment")
        }
        let value = try Self.body(req, type: type)
        // Conditional create: If-None-Exist, or (as fhirpy sends it) the search in the query string.
        var condition = Self.queryItems(req).filter { !$0.0.hasPrefix("_") }
        if let header = req.headers.first(name: "If-None-Exist") {
            guard let items = URLComponents(string: "?" + header.replacingOccurrences(of: "+", with: "%2B"))?.queryItems, !items.isEmpty else {
                throw FHIRError(.badRequest, code: "invalid", "If-None-Exist must be a search such as identifier=system|value")
            }
            condition = items.map { ($0.name, $0.value ?? "") }
        }
        if !condition.isEmpty {
            let query = try FHIRSearch.parse(type, condition, lenient: false)
            let found: [FHIRResource]
            if type == "Patient" {
                found = try await ctx.store.patients(FHIRPatientSearch(db: req.db, clinicID: ctx.staff.clinicID).query(query.criteria).limit(2).all())
            } else {
                found = Array(try await Self.candidates(ctx, type: type, query: query).filter { FHIRSearch.matches($0, query.criteria) }.prefix(2))
            }
            if found.count > 1 {
                throw FHIRError(.preconditionFailed, code: "multiple-matches", "The condition matches more than one \(type); nothing was created")
            }
            if let existing = found.first {
                try await ctx.audit(.read, type, id: existing.id, patients: [existing.patientID])
                return Self.respond(existing, status: .ok, location: "\(ctx.base)/\(type)/\(existing.id)/_history/\(existing.versionID)", req: req)
            }
        }
        let created = try await FHIRWrites(ctx: ctx).create(type, value)
        return Self.respond(created, status: .created, location: "\(ctx.base)/\(type)/\(created.id)/_history/\(created.versionID)", req: req)
    }

    func update(req: Request) async throws -> Response {
        let ctx = try Context(req)
        let type = try ctx.type(req.parameters.get("type"))
        let id = req.parameters.get("id") ?? ""
        guard FHIRWrites.writable.contains(type) else {
            throw FHIRError(.methodNotAllowed, code: "not-supported", "\(type) is read-only over FHIR; Dermis updates Patient and Appointment")
        }
        let value = try Self.body(req, type: type)
        guard value["id"]?.stringValue == id else {
            throw FHIRError(.badRequest, code: "invalid", "The resource's id must be the id in the address (\(id))", expression: "\(type).id")
        }
        // The version the client edited: If-Match, else the body's meta.versionId.
        let expected = try req.headers.first(name: .ifMatch).map { header in
            guard let v = Request.version(inTag: header) else { throw FHIRError(.badRequest, code: "invalid", "If-Match must be a version such as W/\"3\"") }
            return v
        } ?? value["meta"]?["versionId"]?.stringValue.flatMap { Int($0) }
        guard let expected else {
            throw FHIRError(.preconditionRequired, code: "invalid", "Send If-Match with the version you read (its ETag), or meta.versionId")
        }
        let updated = try await FHIRWrites(ctx: ctx).update(type, id: id, value, expectedVersion: expected)
        return Self.respond(updated, req: req)
    }
}

extension Request {
    /// One audit row per patient a request touched (a search page, an export), written together.
    func auditMany(_ action: AuditAction, objectType: String, objectID: String?, patientIDs: [UUID]) async throws {
        let entries = patientIDs.map { auditEntry(action, objectType: objectType, objectID: objectID, patientID: $0, outcome: .success) }
        try await application.auditWriter.append(entries)
        hasAudited = true
    }
}
