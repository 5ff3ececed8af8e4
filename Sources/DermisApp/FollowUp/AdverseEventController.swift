import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// Adverse events of the clinic: opened by a check-in flag or by a practitioner, managed to resolution,
/// listed and exported (CSV) for voluntary reporting (FDA MedWatch; docs/PROTOCOL.md regulatory notes).
struct AdverseEventController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "AdverseEvent")
        routes.get("adverse-events", use: list).access(clinical)
        routes.get("adverse-events.csv", use: csv).access(clinical)
        routes.get("adverse-events", ":eventID", use: show).access(clinical)
        routes.post("adverse-events", ":eventID", use: update).access(clinical)
        routes.post("patients", ":patientID", "sessions", ":chartID", "adverse-events", use: open).access(clinical)
        routes.get("api", "v1", "adverse-events", use: apiList).access(clinical)
        routes.patch("api", "v1", "adverse-events", ":eventID", use: apiUpdate).access(clinical)
    }

    struct Row: Encodable, Content {
        let id: UUID
        let patientID: UUID
        let patientName: String
        let mrn: String
        let chartID: UUID?
        let type: String
        let typeLabel: String
        let severity: String
        let onset: String
        let description: String
        let actions: String
        let outcome: String
        let resolvedOn: String?
        let openedBy: String
        let openedAt: Date
        let version: Int
    }

    private func rows(_ req: Request, openOnly: Bool, id: UUID? = nil) async throws -> [Row] {
        let staff = try req.staff()
        var query = AdverseEvent.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$openedAt, .descending)
        if openOnly { query = query.filter(\.$resolvedOn == nil) }
        if let id { query = query.filter(\.$id == id) }
        let events = try await query.all()
        let patients = Dictionary(try await Patient.query(on: req.db).filter(\.$id ~~ Set(events.map(\.$patient.id))).all().map { ($0.id!, $0) },
                                  uniquingKeysWith: { a, _ in a })
        let labels = Dictionary(uniqueKeysWithValues: req.dermis.clinicalProtocol.followUp.eventTypes.map { ($0.id, $0.label) })
        return events.map { event in
            let patient = patients[event.$patient.id]
            return Row(id: event.id!, patientID: event.$patient.id, patientName: patient.map { $0.fullName } ?? "?",
                       mrn: patient?.mrn ?? "", chartID: event.chartID, type: event.type, typeLabel: labels[event.type] ?? event.type,
                       severity: event.severity, onset: event.onset, description: event.details, actions: event.actions,
                       outcome: event.outcome, resolvedOn: event.resolvedOn,
                       openedBy: event.openedByKind == "check-in-rule" ? "check-in rule" : "practitioner", openedAt: event.openedAt, version: event.version)
        }
    }

    struct ListPage: Encodable {
        let page: PageHeader
        let events: [Row]
        let showingAll: Bool
    }

    func list(req: Request) async throws -> View {
        let all = (try? req.query.get(String.self, at: "all")) == "1"
        let events = try await req.audited(.search, objectType: "AdverseEvent") { try await rows(req, openOnly: !all) }
        return try await req.view.render("adverse-events", ListPage(page: try await PageHeader(req, title: "Adverse events"), events: events, showingAll: all))
    }

    /// Every adverse event of the clinic as CSV (RFC 4180), for voluntary reporting.
    func csv(req: Request) async throws -> Response {
        let events = try await req.audited(.export, objectType: "AdverseEvent") { try await rows(req, openOnly: false) }
        let header = ["id", "mrn", "patient", "session", "type", "severity", "onset", "description", "actions", "outcome", "resolved_on", "opened_by", "opened_at"]
        var lines = [header.joined(separator: ",")]
        for e in events {
            lines.append([e.id.uuidString, e.mrn, e.patientName, e.chartID?.uuidString ?? "", e.type, e.severity, e.onset, e.description,
                          e.actions, e.outcome, e.resolvedOn ?? "", e.openedBy, AuditLog.isoMilliseconds(e.openedAt)].map(CSV.field).joined(separator: ","))
        }
        return PatientCSVController.csvResponse("adverse-events.csv", .init(string: lines.joined(separator: "\r\n") + "\r\n"))
    }

    struct DetailPage: Encodable {
        let page: PageHeader
        let event: Row
        let types: [Option]
        let severities: [Option]
        let outcomes: [Option]
        let errors: [ErrorLine]
    }

    private func find(_ req: Request) async throws -> AdverseEvent {
        let id = try req.uuidParameter("eventID", notFound: "No such adverse event.")
        guard let event = try await AdverseEvent.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == req.staff().clinicID).first() else {
            throw Abort(.notFound, reason: "No such adverse event.")
        }
        return event
    }

    func show(req: Request) async throws -> Response {
        try await render(req, status: .ok, errors: [])
    }

    private func render(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine]) async throws -> Response {
        let event = try await req.audited(.read, objectType: "AdverseEvent", objectID: req.parameters.get("eventID")) { try await find(req) }
        guard let row = try await rows(req, openOnly: false, id: event.id).first else { throw Abort(.notFound) }
        let p = req.dermis.clinicalProtocol
        let page = DetailPage(page: try await PageHeader(req, title: "Adverse event"), event: row,
                              types: p.followUp.eventTypes.map { Option(id: $0.id, name: $0.label, selected: $0.id == row.type) },
                              severities: AdverseSeverity.allValues.map { Option(id: $0, name: $0, selected: $0 == row.severity) },
                              outcomes: AdverseOutcome.allValues.map { Option(id: $0, name: $0, selected: $0 == row.outcome) }, errors: errors)
        return try await req.view.render("adverse-event", page).response(status, for: req)
    }

    struct Changes: Content {
        var version: Int?
        var type: String?
        var severity: String?
        var onset: String?
        var description: String?
        var actions: String?
        var outcome: String?
        var resolvedOn: String?
    }

    /// A practitioner's edit checked against the protocol's types and FHIR's severities and outcomes; every bad field named.
    private func validated(_ changes: Changes, over event: AdverseEvent, _ req: Request) throws -> AdverseEvent {
        let p = req.dermis.clinicalProtocol
        var issues: [FieldIssue] = []
        let type = changes.type ?? event.type
        if !p.followUp.eventTypes.map(\.id).contains(type) { issues.append(FieldIssue(path: "type", problem: "unknown type '\(type)'")) }
        let severity = changes.severity ?? event.severity
        if !AdverseSeverity.allValues.contains(severity) { issues.append(FieldIssue(path: "severity", problem: "must be one of \(AdverseSeverity.allValues.joined(separator: ", "))")) }
        let outcome = changes.outcome ?? event.outcome
        if !AdverseOutcome.allValues.contains(outcome) { issues.append(FieldIssue(path: "outcome", problem: "must be one of \(AdverseOutcome.allValues.joined(separator: ", "))")) }
        let onset = changes.onset ?? event.onset
        if CalendarDate(iso: onset) == nil { issues.append(FieldIssue(path: "onset", problem: "must be a date YYYY-MM-DD")) }
        let resolvedText = (changes.resolvedOn ?? event.resolvedOn ?? "").trimmingCharacters(in: .whitespaces)
        let resolved = resolvedText.isEmpty ? nil : CalendarDate(iso: resolvedText)
        if !resolvedText.isEmpty && resolved == nil { issues.append(FieldIssue(path: "resolvedOn", problem: "must be a date YYYY-MM-DD or empty")) }
        if let resolved, let start = CalendarDate(iso: onset), resolved < start { issues.append(FieldIssue(path: "resolvedOn", problem: "cannot be before the onset \(onset)")) }
        if resolved != nil && outcome == "ongoing" { issues.append(FieldIssue(path: "outcome", problem: "a resolved event needs an outcome other than ongoing")) }
        let description = changes.description ?? event.details
        let actions = changes.actions ?? event.actions
        issues += [TextLimits.issue(description, "description", max: TextLimits.notes), TextLimits.issue(actions, "actions", max: TextLimits.notes)].compactMap { $0 }
        if !issues.isEmpty { throw InvalidInput(issues) }
        event.type = type
        event.severity = severity
        event.outcome = outcome
        event.onset = onset
        event.resolvedOn = resolved?.description
        event.details = description
        event.actions = actions
        return event
    }

    /// Applies a practitioner's edit, version-checked: a stale edit is 409, a bad field 422 naming it.
    private func apply(_ changes: Changes, to event: AdverseEvent, _ req: Request) async throws {
        guard let version = changes.version, version == event.version else {
            throw Abort(.conflict, reason: "Someone changed this adverse event since you opened it; reload and try again.")
        }
        let edited = try validated(changes, over: event, req)
        let staffID = try req.staff().userID
        try await ConditionalUpdate.versioned(AdverseEvent.self, id: try event.requireID(), version: \.$version, expected: version, on: req.db)
            .where(\.$clinic.$id, .equal, event.$clinic.id)
            .set(\.$type, to: edited.type).set(\.$severity, to: edited.severity).set(\.$onset, to: edited.onset)
            .set(\.$details, to: edited.details).set(\.$actions, to: edited.actions).set(\.$outcome, to: edited.outcome)
            .set(\.$resolvedOn, to: edited.resolvedOn)
            .set(\.$updatedAt, to: req.dermis.clock.now()).set(\.$updatedBy, to: staffID)
            .run(orThrow: Abort(.conflict, reason: "Someone changed this adverse event since you opened it; reload and try again."))
        try await AdverseEvent.query(on: req.db).filter(\.$id == event.requireID()).filter(\.$firstActionAt == nil)
            .set(\.$firstActionAt, to: req.dermis.clock.now()).update()
    }

    func update(req: Request) async throws -> Response {
        let event = try await find(req)
        var changes = try req.content.decode(Changes.self)
        if changes.resolvedOn == nil { changes.resolvedOn = "" }
        do {
            try await req.audited(.update, objectType: "AdverseEvent", objectID: event.id?.uuidString, patientID: event.$patient.id) {
                try await apply(changes, to: event, req)
            }
        } catch let invalid as InvalidInput {
            return try await render(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid))
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await render(req, status: .conflict, errors: [ErrorLine(field: "version", message: abort.reason)])
        }
        return req.redirect(to: "/adverse-events/\(event.id!)", redirectType: .normal)
    }

    /// A practitioner opens an event by hand for a session (something seen at a review, a phone call).
    func open(req: Request) async throws -> Response {
        let patient = try await req.patient()
        let staff = try req.staff()
        let session = try await TreatmentService(req: req, patient: patient, staff: staff)
            .latestVersion(of: try req.uuidParameter("chartID", notFound: "No such session."))
        let input = try req.content.decode(Changes.self)
        let today = try await req.today(in: req.clinic())
        let event = AdverseEvent()
        event.$clinic.id = staff.clinicID
        event.$patient.id = try patient.requireID()
        event.chartID = session.chartID
        event.type = input.type ?? "other"
        event.severity = input.severity ?? "mild"
        event.onset = input.onset ?? today.description
        event.details = input.description ?? ""
        event.actions = input.actions ?? ""
        event.outcome = "ongoing"
        event.openedByKind = "practitioner"
        event.openedBy = staff.userID
        event.openedAt = req.dermis.clock.now()
        event.version = 1
        event.updatedAt = event.openedAt
        var changes = input
        changes.resolvedOn = ""
        do {
            try await req.audited(.create, objectType: "AdverseEvent", patientID: try patient.requireID()) {
                try await validated(changes, over: event, req).create(on: req.db)
            }
        } catch let invalid as InvalidInput {
            return try await FollowUpController().render(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid))
        }
        return req.redirect(to: "/adverse-events/\(event.id!)", redirectType: .normal)
    }

    func apiList(req: Request) async throws -> [Row] {
        let all = (try? req.query.get(String.self, at: "status")) != "open"
        return try await req.audited(.search, objectType: "AdverseEvent") { try await rows(req, openOnly: !all) }
    }

    func apiUpdate(req: Request) async throws -> Row {
        let event = try await find(req)
        var changes = try req.decodeJSON(Changes.self)
        changes.version = try req.ifMatchVersion()
        try await req.audited(.update, objectType: "AdverseEvent", objectID: event.id?.uuidString, patientID: event.$patient.id) {
            try await apply(changes, to: event, req)
        }
        guard let row = try await rows(req, openOnly: false, id: event.id).first else { throw Abort(.notFound) }
        return row
    }
}
