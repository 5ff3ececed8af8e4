import DermisCore
import Fluent
import Vapor

/// The clinic's messages, for admins: reminder leads and quiet hours, and the wording of each patient message — edited,
/// checked (a placeholder misspelt, a brace left open, the link left out: refused naming the field), previewed with
/// sample values before saving, and reset to the standard text. Audited.
struct MessagingAdminController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let rule = AccessRule.staff(AccessRule.admins)
        let admin = routes.grouped("admin", "messages")
        admin.get(use: overview).access(rule)
        admin.grouped(UnitOfWorkMiddleware()).post("rules", use: saveRules).access(rule)
        admin.get("templates", ":kind", use: editTemplate).access(rule)
        admin.grouped(UnitOfWorkMiddleware()).post("templates", ":kind", use: saveTemplate).access(rule)
    }

    struct TemplateRow: Encodable {
        let kind: String
        let title: String
        let customised: Bool
    }

    struct RulesForm: Content {
        var reminderHours: String?
        var quietStart: String?
        var quietEnd: String?
    }

    struct Overview: Encodable {
        let page: PageHeader
        let rules: RulesForm
        let templates: [TemplateRow]
        let errors: [ErrorLine]
        let saved: Bool
    }

    func overview(req: Request) async throws -> View {
        try await renderOverview(req, form: nil, errors: [])
    }

    private func renderOverview(_ req: Request, form: RulesForm?, errors: [ErrorLine]) async throws -> View {
        let clinicID = try req.staff().clinicID
        let rules = try await MessagingRules.load(clinic: clinicID, on: req.db)
        let stored = Set(try await MessageTemplate.query(on: req.db).filter(\.$clinic.$id == clinicID).all().map(\.kind))
        return try await req.view.render("messaging-admin", Overview(
            page: try await PageHeader(req, title: "Messages"),
            rules: form ?? RulesForm(reminderHours: rules.reminderHours.map(String.init).joined(separator: ", "),
                                     quietStart: "\(rules.quiet.startHour)", quietEnd: "\(rules.quiet.endHour)"),
            templates: MessageKind.allCases.map { TemplateRow(kind: $0.rawValue, title: $0.title, customised: stored.contains($0.rawValue)) },
            errors: errors, saved: (try? req.query.get(String.self, at: "saved")) != nil))
    }

    func saveRules(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(RulesForm.self)
        do {
            try await req.audited(.update, objectType: "ClinicMessaging", objectID: staff.clinicID.uuidString) {
                var issues: [FieldIssue] = []
                var hours: [Int] = []
                do { hours = try MessagingRules.parseHours(form.reminderHours ?? "") } catch let invalid as InvalidInput { issues += invalid.issues }
                func hour(_ text: String?, _ field: String) -> Int {
                    guard let n = Int((text ?? "").trimmingCharacters(in: .whitespaces)), (0...23).contains(n) else {
                        issues.append(FieldIssue(path: field, problem: "must be an hour from 0 to 23"))
                        return 0
                    }
                    return n
                }
                let start = hour(form.quietStart, "quietStart"), end = hour(form.quietEnd, "quietEnd")
                if !issues.isEmpty { throw InvalidInput(issues) }
                let stored = try await ClinicMessaging.find(staff.clinicID, on: req.db) ?? ClinicMessaging()
                stored.id = staff.clinicID
                stored.reminderHours = hours.map(String.init).joined(separator: ",")
                stored.quietStartHour = start
                stored.quietEndHour = end
                stored.updatedAt = req.dermis.clock.now()
                stored.updatedBy = staff.userID
                try await stored.save(on: req.db)
            }
        } catch let invalid as InvalidInput {
            return try await renderOverview(req, form: form, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
        return req.redirect(to: "/admin/messages?saved=1", redirectType: .normal)
    }

    struct TemplateForm: Content {
        var subject: String?
        var body: String?
        var sms: String?
        /// `preview`, `save` or `reset`.
        var action: String?
    }

    struct Preview: Encodable {
        let subject: String
        let body: String
        let sms: String
        let smsLength: Int
    }

    struct TemplatePage: Encodable {
        let page: PageHeader
        let kind: String
        let title: String
        let variables: [String]
        let form: TemplateForm
        let customised: Bool
        let preview: Preview?
        let errors: [ErrorLine]
        let saved: Bool
    }

    private func kind(_ req: Request) throws -> MessageKind {
        guard let kind = req.parameters.get("kind").flatMap(MessageKind.init(rawValue:)) else { throw Abort(.notFound, reason: "No such message.") }
        return kind
    }

    private func stored(_ req: Request, _ kind: MessageKind) async throws -> MessageTemplate? {
        try await MessageTemplate.query(on: req.db).filter(\.$clinic.$id == req.staff().clinicID).filter(\.$kind == kind.rawValue).first()
    }

    func editTemplate(req: Request) async throws -> View {
        let kind = try kind(req)
        let stored = try await stored(req, kind)
        let standard = kind.standard
        let form = TemplateForm(subject: stored?.subject ?? standard.subject, body: stored?.body ?? standard.body, sms: stored?.sms ?? standard.sms)
        return try await render(req, kind, form: form, customised: stored != nil, preview: Self.preview(form, kind), errors: [])
    }

    private func render(_ req: Request, _ kind: MessageKind, form: TemplateForm, customised: Bool, preview: Preview?, errors: [ErrorLine]) async throws -> View {
        try await req.view.render("message-template", TemplatePage(
            page: try await PageHeader(req, title: kind.title), kind: kind.rawValue, title: kind.title, variables: kind.variables.map { "{{\($0)}}" },
            form: form, customised: customised, preview: preview, errors: errors, saved: (try? req.query.get(String.self, at: "saved")) != nil))
    }

    /// The form's problems: each field checked for its placeholders; a subject on one line; lengths bounded.
    static func issues(_ form: TemplateForm, _ kind: MessageKind) -> [FieldIssue] {
        var issues: [FieldIssue] = []
        for (field, text, limit) in [("subject", form.subject ?? "", 200), ("body", form.body ?? "", 5000), ("sms", form.sms ?? "", 480)] {
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                issues.append(FieldIssue(path: field, problem: "must not be empty"))
                continue
            }
            if text.count > limit { issues.append(FieldIssue(path: field, problem: "must be at most \(limit) characters, not \(text.count)")) }
            issues += TemplateText.issues(text, field: field, kind: kind)
        }
        if (form.subject ?? "").contains(where: \.isNewline) { issues.append(FieldIssue(path: "subject", problem: "must be one line")) }
        return issues
    }

    static func preview(_ form: TemplateForm, _ kind: MessageKind) -> Preview {
        let sms = TemplateText.render(form.sms ?? "", kind.sample)
        return Preview(subject: TemplateText.render(form.subject ?? "", kind.sample), body: TemplateText.render(form.body ?? "", kind.sample),
                       sms: sms, smsLength: sms.count)
    }

    func saveTemplate(req: Request) async throws -> Response {
        let staff = try req.staff()
        let kind = try kind(req)
        let form = try req.content.decode(TemplateForm.self)
        let existing = try await stored(req, kind)
        if form.action == "reset" {
            try await req.audited(.update, objectType: "MessageTemplate", objectID: kind.rawValue) { try await existing?.delete(on: req.db) }
            return req.redirect(to: "/admin/messages/templates/\(kind.rawValue)?saved=1", redirectType: .normal)
        }
        let issues = Self.issues(form, kind)
        guard issues.isEmpty else {
            return try await render(req, kind, form: form, customised: existing != nil, preview: nil, errors: ErrorLine.list(InvalidInput(issues)))
                .response(.unprocessableEntity, for: req)
        }
        guard form.action == "save" else {
            return try await render(req, kind, form: form, customised: existing != nil, preview: Self.preview(form, kind), errors: [])
                .encodeResponse(for: req)
        }
        try await req.audited(.update, objectType: "MessageTemplate", objectID: kind.rawValue) {
            let template = existing ?? MessageTemplate()
            template.$clinic.id = staff.clinicID
            template.kind = kind.rawValue
            template.subject = form.subject ?? ""
            template.body = form.body ?? ""
            template.sms = form.sms ?? ""
            template.updatedAt = req.dermis.clock.now()
            template.updatedBy = staff.userID
            try await template.save(on: req.db)
        }
        return req.redirect(to: "/admin/messages/templates/\(kind.rawValue)?saved=1", redirectType: .normal)
    }
}
