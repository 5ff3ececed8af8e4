import DermisCore
import Foundation
import Vapor

/// Search and history Bundles, with absolute links on the client's own host (FHIR.md: clients page by them).
enum Bundles {
    static func searchset(_ ctx: FHIRController.Context, type: String, query: FHIRSearch.Query, total: Int, page: [FHIRResource],
                          included: [FHIRResource], selfPath: String? = nil) -> FHIRValue {
        func link(offset: Int?) -> String {
            var items = query.canonical
            if let offset, offset > 0 { items.append(("_offset", String(offset))) }
            var components = URLComponents()
            components.queryItems = items.map { URLQueryItem(name: $0.0, value: $0.1) }
            let q = components.percentEncodedQuery.map { "?" + $0.replacingOccurrences(of: "+", with: "%2B") } ?? ""
            return "\(ctx.base)/\(selfPath ?? type)\(q)"
        }
        var links: [FHIRValue] = [["relation": "self", "url": .string(link(offset: query.offset))]]
        if selfPath == nil, !query.summaryCount, query.count > 0 {
            if query.offset + query.count < total { links.append(["relation": "next", "url": .string(link(offset: query.offset + query.count))]) }
            if query.offset > 0 { links.append(["relation": "previous", "url": .string(link(offset: max(0, query.offset - query.count)))]) }
        }
        let entries = page.map { entry($0, ctx, mode: "match") } + included.map { entry($0, ctx, mode: "include") }
        return ["resourceType": "Bundle", "id": .string(UUID().fhirID),
                "meta": ["lastUpdated": .instant(ctx.req.dermis.clock.now())],
                "type": "searchset", "total": .int(total), "link": .array(links), "entry": .list(entries)]
    }

    static func entry(_ resource: FHIRResource, _ ctx: FHIRController.Context, mode: String) -> FHIRValue {
        ["fullUrl": .string("\(ctx.base)/\(resource.type)/\(resource.id)"), "resource": resource.json, "search": ["mode": .string(mode)]]
    }

    static func history(_ ctx: FHIRController.Context, type: String, id: String, versions: [FHIRResource]) -> FHIRValue {
        let entries = versions.map { v -> FHIRValue in
            ["fullUrl": .string("\(ctx.base)/\(type)/\(id)"), "resource": v.json,
             "request": ["method": v.versionID == 1 ? "POST" : "PUT", "url": .string(v.versionID == 1 ? type : "\(type)/\(id)")],
             "response": ["status": v.versionID == 1 ? "201" : "200", "etag": .string(v.etag), "lastModified": .instant(v.lastUpdated)]]
        }
        return ["resourceType": "Bundle", "id": .string(UUID().fhirID), "meta": ["lastUpdated": .instant(ctx.req.dermis.clock.now())],
                "type": "history", "total": .int(versions.count),
                "link": [["relation": "self", "url": .string("\(ctx.base)/\(type)/\(id)/_history")]], "entry": .list(entries)]
    }
}

/// The CapabilityStatement: exactly what works, nothing more.
enum Capability {
    static func statement(origin: String, p: ClinicalProtocol) -> FHIRValue {
        let resources: [FHIRValue] = FHIRStore.types.map { type in
            var interactions = ["read", "search-type"]
            if FHIRStore.versionedTypes.contains(type) { interactions += ["vread", "history-instance"] }
            if FHIRWrites.writable.contains(type) { interactions += ["create", "update"] }
            let params = FHIRSearch.definitions(type).sorted { $0.key < $1.key }.map { name, def -> FHIRValue in
                ["name": .string(name), "type": .string(def.kind.rawValue), "documentation": .string(def.documentation)]
            }
            var operations: [FHIRValue] = []
            if type == "Patient" {
                operations = [
                    ["name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"],
                    ["name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"],
                ]
            }
            return [
                "type": .string(type),
                "versioning": FHIRWrites.writable.contains(type) ? "versioned-update" : "versioned",
                "readHistory": FHIRStore.versionedTypes.contains(type) ? true : false,
                "updateCreate": FHIRWrites.writable.contains(type) ? false : nil,
                "conditionalCreate": FHIRWrites.writable.contains(type) ? true : nil,
                "conditionalRead": "not-match",
                "interaction": .array(interactions.map { ["code": .string($0)] }),
                "searchInclude": .list(FHIRSearch.includes(type).map { .string("\(type):\($0)") }),
                "searchParam": .list(params),
                "operation": .list(operations),
            ]
        }
        return [
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-30",
            "publisher": "Dermis",
            "kind": "instance",
            "software": ["name": "Dermis"],
            "implementation": ["description": "Dermis microneedling clinic system", "url": .string(origin + "/fhir/R4")],
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [[
                "mode": "server",
                "documentation": .string("One clinic's records. Staff API tokens (Authorization: Bearer); front-desk tokens see demographics "
                    + "and bookings only. Every access to patient data is audited. Protocol \(p.version)."),
                "security": [
                    "cors": false,
                    "service": [["coding": [["system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth",
                                              "display": "OAuth"]],
                                 "text": "Bearer tokens made by staff on their account page (not SMART on FHIR)"]],
                    "description": "Send Authorization: Bearer <token>. A token acts with its staff member's role and clinic.",
                ],
                "resource": .array(resources),
                "operation": [
                    ["name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"],
                    ["name": "group-export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"],
                ],
            ]],
        ]
    }
}
