import DermisCore
import Fluent
import FluentSQL
import Foundation
import SQLKit
import Vapor

/// A FHIR search: the parameters each type supports, their parsing, and matching (in memory on a resource's index, or
/// as SQL for Patient, whose registry can be large).
enum FHIRSearch {
    enum Kind: String, Sendable { case token, reference, date, string }

    struct Definition: Sendable {
        let kind: Kind
        let documentation: String
    }

    /// Every type: `_id` and `_lastUpdated`.
    static let common: [String: Definition] = [
        "_id": .init(kind: .token, documentation: "The resource's id"),
        "_lastUpdated": .init(kind: .date, documentation: "When the resource last changed"),
    ]
    /// Types that belong to a patient: `patient` and `subject`.
    static let compartment: [String: Definition] = [
        "patient": .init(kind: .reference, documentation: "The patient (Patient/id or id)"),
        "subject": .init(kind: .reference, documentation: "The patient (Patient/id or id)"),
    ]

    static let parameters: [String: [String: Definition]] = [
        "Patient": [
            "identifier": .init(kind: .token, documentation: "The clinic record number (system \(FHIRNames.mrn)) or another system's identifier"),
            "name": .init(kind: .string, documentation: "Given or family name, starting with (accents and case ignored)"),
            "family": .init(kind: .string, documentation: "Family name, starting with"),
            "given": .init(kind: .string, documentation: "Given name, starting with"),
            "birthdate": .init(kind: .date, documentation: "Date of birth"),
            "active": .init(kind: .token, documentation: "false for archived records"),
        ],
        "Practitioner": [
            "name": .init(kind: .string, documentation: "Name, starting with"),
            "active": .init(kind: .token, documentation: "true or false"),
            "email": .init(kind: .token, documentation: "Work email"),
        ],
        "PractitionerRole": [
            "practitioner": .init(kind: .reference, documentation: "The practitioner"),
            "active": .init(kind: .token, documentation: "true or false"),
            "role": .init(kind: .token, documentation: "admin, practitioner or front-desk"),
            "location": .init(kind: .reference, documentation: "A location they work at"),
        ],
        "Organization": ["name": .init(kind: .string, documentation: "Name, starting with")],
        "Group": ["name": .init(kind: .string, documentation: "The location's name, starting with")],
        "Location": [
            "name": .init(kind: .string, documentation: "Name, starting with"),
            "status": .init(kind: .token, documentation: "active or inactive"),
            "organization": .init(kind: .reference, documentation: "The clinic"),
        ],
        "HealthcareService": [
            "name": .init(kind: .string, documentation: "Name, starting with"),
            "service-type": .init(kind: .token, documentation: "The service code"),
        ],
        "Schedule": [
            "actor": .init(kind: .reference, documentation: "The practitioner or a location"),
            "active": .init(kind: .token, documentation: "true or false"),
        ],
        "Device": ["status": .init(kind: .token, documentation: "active or inactive (recalled lots, retired pens)")],
        "Questionnaire": [
            "url": .init(kind: .token, documentation: "The canonical URL"),
            "status": .init(kind: .token, documentation: "active"),
        ],
        "Appointment": [
            "date": .init(kind: .date, documentation: "When it takes place"),
            "status": .init(kind: .token, documentation: "pending, booked, checked-in, fulfilled, noshow or cancelled"),
            "practitioner": .init(kind: .reference, documentation: "The practitioner"),
            "location": .init(kind: .reference, documentation: "The location"),
            "actor": .init(kind: .reference, documentation: "The patient, practitioner or location"),
            "service-type": .init(kind: .token, documentation: "The service code"),
        ],
        "QuestionnaireResponse": [
            "authored": .init(kind: .date, documentation: "When the intake was recorded"),
            "status": .init(kind: .token, documentation: "completed"),
            "questionnaire": .init(kind: .reference, documentation: "Questionnaire/intake"),
        ],
        "RiskAssessment": [
            "date": .init(kind: .date, documentation: "The day screened"),
            "status": .init(kind: .token, documentation: "final, or amended once a practitioner set a rule aside"),
        ],
        "CarePlan": [
            "date": .init(kind: .date, documentation: "When the plan was made"),
            "status": .init(kind: .token, documentation: "active (the latest plan) or revoked (superseded)"),
        ],
        "Consent": [
            "date": .init(kind: .date, documentation: "When it was signed"),
            "status": .init(kind: .token, documentation: "active"),
        ],
        "Procedure": [
            "date": .init(kind: .date, documentation: "When it was performed"),
            "status": .init(kind: .token, documentation: "completed"),
            "performer": .init(kind: .reference, documentation: "The practitioner"),
            "code": .init(kind: .token, documentation: "\(FHIRNames.procedure)|microneedling"),
            "part-of": .init(kind: .reference, documentation: "The session a zone's procedure belongs to"),
        ],
        "Observation": [
            "date": .init(kind: .date, documentation: "When it was recorded"),
            "status": .init(kind: .token, documentation: "final"),
            "code": .init(kind: .token, documentation: "The scale (\(FHIRNames.outcomeScale)) or LOINC code"),
            "part-of": .init(kind: .reference, documentation: "The session"),
        ],
        "AdverseEvent": [
            "date": .init(kind: .date, documentation: "Onset"),
            "severity": .init(kind: .token, documentation: "mild, moderate or severe"),
            "event": .init(kind: .token, documentation: "The event type"),
        ],
        "Media": [
            "created": .init(kind: .date, documentation: "The day taken"),
            "site": .init(kind: .token, documentation: "The zone (\(FHIRNames.zone))"),
            "view": .init(kind: .string, documentation: "The view"),
        ],
        "Provenance": [
            "target": .init(kind: .reference, documentation: "The procedure"),
            "recorded": .init(kind: .date, documentation: "When it was signed"),
        ],
    ]

    /// What `_include` follows, per type: the reference parameters.
    static func includes(_ type: String) -> [String] {
        definitions(type).filter { $0.value.kind == .reference }.map(\.key).sorted()
    }

    static func definitions(_ type: String) -> [String: Definition] {
        var all = common.merging(parameters[type] ?? [:]) { $1 }
        if type != "Patient", FHIRStore.clinicalTypes.contains(type) || type == "Appointment" { all.merge(compartment) { $1 } }
        if type == "AdverseEvent" { all["patient"] = nil }  // R4 names it subject only
        return all
    }

    /// Paging and result controls, understood on every search.
    static let controls: Set<String> = ["_count", "_offset", "_summary", "_include", "_total", "_format", "_pretty", "_totalMethod", "_elements", "_sort"]

    // MARK: Parsed search

    struct Criterion: Sendable {
        let name: String
        let kind: Kind
        let modifier: String?
        /// Any one matches (comma-separated values).
        let values: [String]
    }

    struct Query: Sendable {
        var criteria: [Criterion] = []
        var count = 50
        var offset = 0
        var summaryCount = false
        var includes: [(source: String, parameter: String, target: String?)] = []
        /// The parameters as understood, for the self link.
        var canonical: [(String, String)] = []

        /// The patient the search is about (`patient=` or `subject=`), when it names exactly one.
        var patient: UUID? {
            for c in criteria where (c.name == "patient" || c.name == "subject") && c.values.count == 1 {
                if let id = UUID(uuidString: String(c.values[0].split(separator: "/").last ?? "")) { return id }
            }
            return nil
        }
    }

    static let maxCount = 1000
    /// Deeper than this, page with a narrower search (or export).
    static let maxOffset = 1_000_000

    /// Parses a search's parameters; an unknown parameter or a malformed value is a 400 naming it (`lenient` ignores
    /// unknown parameters instead, as `Prefer: handling=lenient` asks).
    static func parse(_ type: String, _ items: [(String, String)], lenient: Bool) throws -> Query {
        var query = Query()
        let defs = definitions(type)
        for (rawName, value) in items {
            let parts = rawName.split(separator: ":", maxSplits: 1).map(String.init)
            let name = parts.first ?? rawName
            let modifier = parts.count > 1 ? parts[1] : nil
            switch name {
            case "_count":
                guard let n = Int(value), n >= 0 else { throw FHIRError(.badRequest, code: "invalid", "_count must be a whole number 0 or more, not '\(value)'", expression: "_count") }
                query.count = min(n, maxCount)
                query.canonical.append(("_count", String(query.count)))
                continue
            case "_offset":
                guard let n = Int(value), n >= 0, n <= maxOffset else {
                    throw FHIRError(.badRequest, code: "invalid", "_offset must be a whole number from 0 to \(maxOffset)", expression: "_offset")
                }
                query.offset = n
                continue
            case "_summary":
                if value == "count" { query.summaryCount = true; query.canonical.append(("_summary", "count")) }
                else if value != "false" { throw FHIRError(.badRequest, code: "not-supported", "_summary supports count and false only", expression: "_summary") }
                continue
            case "_include":
                let pieces = value.split(separator: ":").map(String.init)
                guard pieces.count >= 2, pieces[0] == type, includes(type).contains(pieces[1]),
                      pieces.count == 2 || FHIRStore.types.contains(pieces[2]) else {
                    throw FHIRError(.badRequest, code: "not-supported",
                                    "_include '\(value)' is not supported; \(type) includes \(includes(type).map { "\(type):\($0)" }.joined(separator: ", "))",
                                    expression: "_include")
                }
                query.includes.append((pieces[0], pieces[1], pieces.count > 2 ? pieces[2] : nil))
                query.canonical.append(("_include", value))
                continue
            default:
                break
            }
            if controls.contains(name) { continue }
            guard let def = defs[name] else {
                if lenient || name.hasPrefix("_") { continue }
                throw FHIRError(.badRequest, code: "not-supported",
                                "Unknown search parameter '\(name)' for \(type); supported: \(defs.keys.sorted().joined(separator: ", "))",
                                expression: name)
            }
            if let modifier {
                let allowed: [Kind: Set<String>] = [.string: ["exact", "contains"], .token: ["not"], .reference: [], .date: []]
                guard allowed[def.kind]?.contains(modifier) == true else {
                    throw FHIRError(.badRequest, code: "not-supported", "The modifier :\(modifier) is not supported on \(name)", expression: rawName)
                }
            }
            let values = value.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
            for v in values {
                guard !v.isEmpty else { throw FHIRError(.badRequest, code: "invalid", "\(name) has an empty value", expression: name) }
                if def.kind == .date, dateComparison(v) == nil {
                    throw FHIRError(.badRequest, code: "invalid", "\(name) must be a date such as 2026-12-01 or ge2026-12-01T10:00:00Z, not '\(v)'",
                                    expression: name)
                }
            }
            query.criteria.append(Criterion(name: name, kind: def.kind, modifier: modifier, values: values))
            query.canonical.append((rawName, value))
        }
        return query
    }

    /// The date range a search asks for, when its `date` criteria bound it on both sides (one value each).
    static func dateBounds(_ criteria: [Criterion]) -> (lo: Date, hi: Date)? {
        var lo: Date?, hi: Date?
        for c in criteria where c.name == "date" && c.values.count == 1 && c.modifier == nil {
            guard let (prefix, range) = dateComparison(c.values[0]) else { continue }
            switch prefix {
            case "eq": lo = max(lo ?? range.lo, range.lo); hi = min(hi ?? range.hi, range.hi)
            case "ge", "gt", "sa": lo = max(lo ?? range.lo, prefix == "ge" ? range.lo : range.hi)
            case "le", "lt", "eb": hi = min(hi ?? range.hi, prefix == "le" ? range.hi : range.lo)
            default: break
            }
        }
        guard let lo, let hi else { return nil }
        return (lo, hi)
    }

    /// The longest stretch an Appointment search without a patient may cover.
    static let maxAppointmentDays = 92.0

    // MARK: Matching in memory

    static func matches(_ resource: FHIRResource, _ criteria: [Criterion]) -> Bool {
        criteria.allSatisfy { c in
            let indexed = resource.index[c.name] ?? []
            let any = c.values.contains { value in indexed.contains { matches($0, value, c.modifier) } }
            return c.modifier == "not" ? !any : any
        }
    }

    static func matches(_ indexed: SearchValue, _ value: String, _ modifier: String?) -> Bool {
        switch indexed {
        case let .token(system, code):
            guard let bar = value.firstIndex(of: "|") else { return code == value }
            let wantSystem = String(value[..<bar]), wantCode = String(value[value.index(after: bar)...])
            if wantSystem.isEmpty { return system == nil && code == wantCode }
            return system == wantSystem && (wantCode.isEmpty || code == wantCode)
        case let .reference(reference):
            return referenceMatches(reference, value)
        case let .string(text):
            let folded = searchFolded(text), want = searchFolded(value)
            switch modifier {
            case "exact": return text == value
            case "contains": return folded.contains(want)
            default: return folded.hasPrefix(want) || folded.contains(" " + want)
            }
        case let .date(range):
            guard let (prefix, wanted) = dateComparison(value) else { return false }
            return compare(range, prefix, wanted)
        }
    }

    /// `Patient/x`, `x` or an absolute URL ending in `Patient/x`, against a stored `Type/id`.
    static func referenceMatches(_ stored: String, _ value: String) -> Bool {
        let trimmed = value.hasSuffix("/") ? String(value.dropLast()) : value
        if trimmed == stored || trimmed.hasSuffix("/" + stored) { return true }
        if !trimmed.contains("/") { return stored.hasSuffix("/" + trimmed.lowercased()) || stored.hasSuffix("/" + trimmed) }
        return false
    }

    static let prefixes = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]

    static func dateComparison(_ value: String) -> (String, DateRange)? {
        var prefix = "eq", rest = value
        if let p = prefixes.first(where: { value.hasPrefix($0) }) { prefix = p; rest = String(value.dropFirst(2)) }
        // A `+` in a zone arrives as a space when the client did not encode it.
        guard let range = DateRange.parse(rest.replacingOccurrences(of: " ", with: "+")) else { return nil }
        return (prefix, range)
    }

    /// FHIR's date comparisons: the target's range against the parameter's.
    static func compare(_ t: DateRange, _ prefix: String, _ p: DateRange) -> Bool {
        switch prefix {
        case "eq": t.lo >= p.lo && t.hi <= p.hi
        case "ne": !(t.lo >= p.lo && t.hi <= p.hi)
        case "gt": t.hi > p.hi
        case "lt": t.lo < p.lo
        case "ge": t.hi > p.lo
        case "le": t.lo < p.hi
        case "sa": t.lo >= p.hi
        case "eb": t.hi <= p.lo
        default: t.hi > p.lo.addingTimeInterval(-86_400) && t.lo < p.hi.addingTimeInterval(86_400)  // ap: within a day
        }
    }
}

/// Patient search as SQL: the registry may hold 100,000 records.
struct FHIRPatientSearch {
    let db: any Database
    let clinicID: UUID

    func query(_ criteria: [FHIRSearch.Criterion]) throws -> QueryBuilder<Patient> {
        var query = Patient.query(on: db).filter(\.$clinic.$id == clinicID)
        for c in criteria {
            query = query.group(c.modifier == "not" ? .and : .or) { group in
                for value in c.values { self.add(c, value, to: group) }
            }
        }
        return query
    }

    private func add(_ c: FHIRSearch.Criterion, _ value: String, to group: QueryBuilder<Patient>) {
        let negate = c.modifier == "not"
        switch c.name {
        case "_id":
            let id = UUID(uuidString: value) ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            group.filter(\.$id, negate ? .notEqual : .equal, id)
        case "active":
            group.filter(\.$archived, negate ? .equal : .notEqual, value == "true")
        case "identifier":
            let bar = value.firstIndex(of: "|")
            let system = bar.map { String(value[..<$0]) }
            let code = bar.map { String(value[value.index(after: $0)...]) } ?? value
            let external: SQLQueryString = system.map {
                "\(ident: "id") IN (SELECT \(ident: "patient_id") FROM \(ident: "patient_identifier") WHERE \(ident: "clinic_id") = \(bind: clinicID) AND \(ident: "system") = \(bind: $0) AND \(ident: "value") = \(bind: code))"
            } ?? "\(ident: "id") IN (SELECT \(ident: "patient_id") FROM \(ident: "patient_identifier") WHERE \(ident: "clinic_id") = \(bind: clinicID) AND \(ident: "value") = \(bind: code))"
            if system == FHIRNames.mrn { group.filter(\.$mrn, negate ? .notEqual : .equal, code) }
            else if system == nil { group.group(.or) { $0.filter(\.$mrn == code).filter(.sql(embed: external)) } }
            else { group.filter(.sql(embed: external)) }
        case "name", "family", "given":
            let words = searchFolded(value).split(separator: " ").map { PatientSearchIndex.escaped(String($0)) }.filter { !$0.isEmpty }
            group.group(.and) { all in
                for word in words {
                    switch (c.name, c.modifier) {
                    case (_, "contains"): all.filter(\.$searchName ~~ word)
                    case ("family", _):
                        all.filter(.sql(embed: "LOWER(\(ident: "family_name")) LIKE \(bind: word + "%")"))
                    case ("given", _):
                        all.filter(.sql(embed: "LOWER(\(ident: "given_name")) LIKE \(bind: word + "%")"))
                    default:
                        all.group(.or) { $0.filter(\.$searchName =~ word).filter(.sql(embed: "\(ident: "search_name") LIKE \(bind: "% " + word + "%")")) }
                    }
                }
            }
        case "birthdate":
            guard let (prefix, p) = FHIRSearch.dateComparison(value) else { return }
            var utc = Calendar(identifier: .gregorian)
            utc.timeZone = TimeZone(identifier: "UTC")!
            let lo = CalendarDate(p.lo, in: utc.timeZone).description
            // The first day after the parameter's range.
            let hi = CalendarDate(p.hi.addingTimeInterval(-0.001), in: utc.timeZone).adding(days: 1).description
            switch prefix {
            case "ne": group.group(.or) { $0.filter(\.$dateOfBirth < lo).filter(\.$dateOfBirth >= hi) }
            case "gt", "sa": group.filter(\.$dateOfBirth >= hi)
            case "lt", "eb": group.filter(\.$dateOfBirth < lo)
            case "ge": group.filter(\.$dateOfBirth >= lo)
            case "le": group.filter(\.$dateOfBirth < hi)
            default: group.group(.and) { $0.filter(\.$dateOfBirth >= lo).filter(\.$dateOfBirth < hi) }
            }
        case "_lastUpdated":
            guard let (prefix, p) = FHIRSearch.dateComparison(value) else { return }
            switch prefix {
            case "ne": group.group(.or) { $0.filter(\.$updatedAt < p.lo).filter(\.$updatedAt >= p.hi) }
            case "gt", "sa": group.filter(\.$updatedAt >= p.hi)
            case "lt", "eb": group.filter(\.$updatedAt < p.lo)
            case "ge": group.filter(\.$updatedAt >= p.lo)
            case "le": group.filter(\.$updatedAt < p.hi)
            default: group.group(.and) { $0.filter(\.$updatedAt >= p.lo).filter(\.$updatedAt < p.hi) }
            }
        default:
            break
        }
    }
}
