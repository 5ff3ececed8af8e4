import DermisCore
import Fluent
import Vapor

/// The outbox for admins: every message of the clinic with where it is (queued, sending, retry, sent, dead), its
/// attempts and the transport's last answer; a dead one can be queued again. Without a transport it says so, and the
/// text is here to copy: nothing fails silently.
struct OutboxController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let admin = routes.grouped("admin", "outbox")
        admin.get(use: list).access(.staff(AccessRule.admins, audits: "Message"))
        admin.get(":messageID", use: show).access(.staff(AccessRule.admins, audits: "Message"))
        admin.grouped(UnitOfWorkMiddleware()).post(":messageID", "retry", use: retry).access(.staff(AccessRule.admins, audits: "Message"))
    }

    struct Row: Encodable {
        let id: String
        let created: String
        let kind: String
        let channel: String
        let recipient: String
        let subject: String
        let status: String
        let attempts: Int
        let lastError: String
        let sent: String
    }

    struct Page: Encodable {
        let page: PageHeader
        let problem: String?
        let status: String
        let statuses: [Option]
        let rows: [Row]
        let counts: [Option]
    }

    func list(req: Request) async throws -> View {
        let staff = try req.staff()
        let status = (try? req.query.get(String.self, at: "status")).flatMap(OutboxStatus.init(rawValue:))
        var query = OutboxMessage.query(on: req.db).filter(\.$clinic.$id == staff.clinicID)
        if let status { query = query.filter(\.$status == status.rawValue) }
        let messages = try await req.audited(.read, objectType: "Message") { try await query.sort(\.$createdAt, .descending).limit(200).all() }
        var counts: [Option] = []
        for each in OutboxStatus.allCases {
            let n = try await OutboxMessage.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$status == each.rawValue).count()
            counts.append(Option(id: each.rawValue, name: "\(n)", selected: each == status))
        }
        return try await req.view.render("outbox", Page(
            page: try await PageHeader(req, title: "Outbox"), problem: req.application.mail.problem, status: status?.rawValue ?? "",
            statuses: [Option(id: "", name: "all", selected: status == nil)] + OutboxStatus.allCases.map { Option(id: $0.rawValue, name: $0.rawValue, selected: $0 == status) },
            rows: messages.map(Self.row), counts: counts))
    }

    static func row(_ m: OutboxMessage) -> Row {
        Row(id: m.id?.uuidString ?? "", created: AuditLog.isoMilliseconds(m.createdAt), kind: m.kind ?? "", channel: m.isSMS ? "sms" : "email", recipient: m.recipient,
            subject: m.subject, status: m.status, attempts: m.attempts ?? 0, lastError: m.lastError ?? "",
            sent: m.sentAt.map(AuditLog.isoMilliseconds) ?? "")
    }

    struct MessagePage: Encodable {
        let page: PageHeader
        let problem: String?
        let message: Row
        let body: String
    }

    private func message(_ req: Request) async throws -> OutboxMessage {
        let id = try req.uuidParameter("messageID", notFound: "No such message.")
        guard let message = try await OutboxMessage.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == req.staff().clinicID).first() else {
            throw Abort(.notFound, reason: "No such message.")
        }
        return message
    }

    func show(req: Request) async throws -> View {
        let found = try await req.audited(.read, objectType: "Message") { try await self.message(req) }
        return try await req.view.render("outbox-message", MessagePage(page: try await PageHeader(req, title: "Message"),
                                                                       problem: req.application.mail.problem, message: Self.row(found), body: found.body))
    }

    /// A dead message back in the queue, its attempts counted afresh.
    func retry(req: Request) async throws -> Response {
        let message = try await message(req)
        try await req.audited(.update, objectType: "Message", objectID: message.id?.uuidString) {
            guard message.status == OutboxStatus.dead.rawValue else { throw Abort(.conflict, reason: "Only a dead message is queued again.") }
            message.status = OutboxStatus.queued.rawValue
            message.attempts = 0
            message.notBefore = nil
            try await message.save(on: req.db)
        }
        return req.redirect(to: "/admin/outbox/\(try message.requireID())", redirectType: .normal)
    }
}
