import DermisCore
import Fluent
import Vapor

/// The audit log for admins, filtered by user, patient, action and date.
struct AuditPageController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("admin", "audit", use: list).access(.staff(AccessRule.admins))
    }

    struct Row: Encodable {
        let seq: Int
        let at: String
        let actor: String
        let action: String
        let objectType: String
        let objectID: String
        let patientID: String
        let outcome: String
        let sourceIP: String
    }

    struct Filters: Content {
        var user: String?
        var patient: String?
        var action: String?
        var from: String?
        var to: String?
    }

    struct Page: Encodable {
        let page: PageHeader
        let filters: Filters
        let actions: [Option]
        let rows: [Row]
        let limit: Int
    }

    func list(req: Request) async throws -> View {
        let filters = try req.query.decode(Filters.self)
        // An admin reads their own clinic's chain, never another clinic's. Rows that belong to no clinic (a failed
        // sign-in to an unknown address, a wrong setup code) are shown too when the database holds only this clinic.
        let clinicID = try req.staff().clinicID
        var query = AuditEvent.query(on: req.db)
        if try await Clinic.query(on: req.db).count() == 1 {
            query = query.group(.or) { $0.filter(\.$chainID == clinicID).filter(\.$chainID == nil) }
        } else {
            query = query.filter(\.$chainID == clinicID)
        }
        if let user = blank(filters.user) { query = query.filter(\.$actorEmail == user.lowercased()) }
        if let patient = blank(filters.patient).flatMap(UUID.init(uuidString:)) { query = query.filter(\.$patientID == patient) }
        if let action = blank(filters.action) { query = query.filter(\.$action == action) }
        if let from = blank(filters.from).flatMap(CalendarDate.init(iso:)) { query = query.filter(\.$at >= from.description) }
        if let to = blank(filters.to).flatMap(CalendarDate.init(iso:)) { query = query.filter(\.$at < to.adding(days: 1).description) }
        let limit = 200
        let events = try await query.sort(\.$seq, .descending).limit(limit).all()
        let rows = events.map {
            Row(seq: $0.seq, at: $0.at, actor: $0.actorEmail ?? "—", action: $0.action, objectType: $0.objectType,
                objectID: $0.objectID ?? "", patientID: $0.patientID?.uuidString ?? "", outcome: $0.outcome, sourceIP: $0.sourceIP)
        }
        return try await req.view.render("audit", Page(
            page: try await PageHeader(req, title: "Audit log"), filters: filters,
            actions: AuditAction.allCases.map { Option(id: $0.rawValue, name: $0.rawValue, selected: $0.rawValue == filters.action) },
            rows: rows, limit: limit))
    }

    private func blank(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        return text
    }
}
