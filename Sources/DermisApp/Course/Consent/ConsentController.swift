import DermisCore
import Fluent
import Vapor

/// Consent text (admins publish versions) and the patient's signature on the tablet, with a printable copy.
struct ConsentController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("admin", "consent", use: templates).access(.staff(AccessRule.admins))
        routes.post("admin", "consent", use: publish).access(.staff(AccessRule.admins))
        // Front desk collects the signature on the tablet (the patient reads what they sign); a signed consent with its
        // signature is clinical record.
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        let patient = routes.grouped("patients", ":patientID")
        patient.get("plans", ":planID", "consent", use: signForm).access(rule)
        patient.post("plans", ":planID", "consent", use: sign).access(rule)
        patient.get("consents", ":consentID", use: show).access(.staff(AccessRule.clinical, audits: "Patient"))
        routes.post("api", "v1", "patients", ":patientID", "plans", ":planID", "consents", use: apiSign).access(rule)
    }

    // MARK: Templates

    struct TemplateRow: Encodable {
        let version: Int
        let title: String
        let created: String
    }

    struct TemplatesPage: Encodable {
        let page: PageHeader
        let current: TemplateText?
        let history: [TemplateRow]
        let errors: [ErrorLine]
    }

    struct TemplateText: Encodable {
        let id: String
        let version: Int
        let title: String
        let paragraphs: [String]
    }

    static func text(_ template: ConsentTemplate) -> TemplateText {
        TemplateText(id: template.id?.uuidString ?? "", version: template.version, title: template.title,
                     paragraphs: template.body.components(separatedBy: "\n\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty })
    }

    func templates(req: Request) async throws -> View {
        try await renderTemplates(req, errors: [])
    }

    private func renderTemplates(_ req: Request, errors: [ErrorLine]) async throws -> View {
        let all = try await ConsentTemplate.query(on: req.db).filter(\.$clinic.$id == req.staff().clinicID).sort(\.$version, .descending).all()
        return try await req.view.render("consent-templates", TemplatesPage(
            page: try await PageHeader(req, title: "Consent text"), current: all.first.map(Self.text),
            history: all.map { TemplateRow(version: $0.version, title: $0.title, created: AuditLog.isoDay($0.createdAt)) },
            errors: errors))
    }

    struct TemplateForm: Content {
        var title: String?
        var body: String?
    }

    /// Publishes a new version; the old ones stay exactly as patients signed them.
    func publish(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(TemplateForm.self)
        do {
            _ = try await ConsentTexts.publish(title: form.title ?? "", body: form.body ?? "", clinicID: staff.clinicID, by: staff.userID,
                                               at: req.dermis.clock.now(), on: req.db)
            return req.redirect(to: "/admin/consent", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderTemplates(req, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    // MARK: Signing

    private func service(_ req: Request) async throws -> TreatmentService {
        TreatmentService(req: req, patient: try await req.patient(), staff: try req.staff())
    }

    private func planID(_ req: Request) throws -> UUID { try req.uuidParameter("planID", notFound: "No such plan.") }

    struct SignPage: Encodable {
        let page: PageHeader
        let patientID: String
        let planID: String
        let patientName: String
        let planVersion: Int
        let zones: [String]
        let template: TemplateText?
        let typedName: String
        let errors: [ErrorLine]
    }

    func signForm(req: Request) async throws -> View {
        try await renderSign(req, typedName: "", errors: [])
    }

    private func renderSign(_ req: Request, typedName: String, errors: [ErrorLine]) async throws -> View {
        let service = try await service(req)
        let plan = try await req.audited(.read, objectType: "TreatmentPlan", patientID: service.patient.id) { try await service.plan(try planID(req)) }
        let p = req.dermis.clinicalProtocol
        let zones = try plan.plan.zones.map { "\(p.zone($0.zone)?.displayName ?? $0.zone): \(formatMillimetres($0.depthMm)) mm, \($0.passes) passes" }
        return try await req.view.render("consent-sign", SignPage(
            page: try await PageHeader(req, title: "Consent"), patientID: service.patientID.uuidString, planID: try plan.requireID().uuidString,
            patientName: service.patient.fullName, planVersion: plan.version, zones: zones,
            template: try await service.latestTemplate().map(Self.text), typedName: typedName, errors: errors))
    }

    struct SignForm: Content {
        var typedName: String?
        var signature: String?
        var templateID: String?
    }

    func sign(req: Request) async throws -> Response {
        let service = try await service(req)
        let form = try req.content.decode(SignForm.self)
        do {
            let consent = try await signed(req, service: service, form: form)
            guard AccessRule.clinical.contains(try req.staff().role) else {
                return req.redirect(to: "/patients/\(service.patientID)/course", redirectType: .normal)
            }
            return req.redirect(to: "/patients/\(service.patientID)/consents/\(try consent.requireID())", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderSign(req, typedName: form.typedName ?? "", errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    private func signed(_ req: Request, service: TreatmentService, form: SignForm) async throws -> ConsentRecord {
        let plan = try await service.plan(try planID(req))
        let drawing = try await TreatmentService.drawnSignature(form.signature ?? "", on: req)
        return try await req.audited(.create, objectType: "Consent", patientID: service.patient.id) {
            try await service.sign(plan: plan, templateID: form.templateID.flatMap(UUID.init(uuidString:)),
                                   typedName: form.typedName ?? "", drawing: drawing)
        }
    }

    struct ConsentJSON: Content {
        let id: UUID
        let planID: UUID
        let templateID: UUID
        let typedName: String
        let signatureSHA256: String
        let signedAt: Date
    }

    func apiSign(req: Request) async throws -> Response {
        let service = try await service(req)
        let consent = try await signed(req, service: service, form: try req.decodeJSON(SignForm.self))
        return try await ConsentJSON(id: try consent.requireID(), planID: consent.$plan.id, templateID: consent.$template.id,
                                     typedName: consent.typedName, signatureSHA256: consent.signatureSHA256, signedAt: consent.signedAt)
            .encodeResponse(status: .created, for: req)
    }

    struct ConsentPage: Encodable {
        let page: PageHeader
        let patientName: String
        let patientID: String
        let mrn: String
        let planVersion: Int
        let template: TemplateText
        let typedName: String
        let signedAt: String
        let signatureDataURL: String
        let sha256: String
        let verified: Bool
        /// Where it was signed: on the clinic's tablet, or by the patient at home on their own pages.
        let signedWhere: String
    }

    /// The printable copy: the exact text version signed, the plan version, the drawing and its checked digest.
    func show(req: Request) async throws -> View {
        let service = try await service(req)
        let id = try req.uuidParameter("consentID", notFound: "No such consent.")
        let consent = try await req.audited(.read, objectType: "Consent", objectID: id.uuidString, patientID: service.patient.id) {
            try await service.consent(id)
        }
        let template = try await ConsentTemplate.require(consent.$template.id, on: req.db)
        let plan = try await TreatmentPlanRecord.require(consent.$plan.id, on: req.db)
        let digest = Secrets.digest(consent.signaturePNG)
        return try await req.view.render("consent", ConsentPage(
            page: try await PageHeader(req, title: "Signed consent"), patientName: service.patient.fullName,
            patientID: service.patientID.uuidString, mrn: service.patient.mrn, planVersion: plan.version, template: Self.text(template),
            typedName: consent.typedName, signedAt: AuditLog.isoMilliseconds(consent.signedAt),
            signatureDataURL: "data:image/png;base64," + consent.signaturePNG.base64EncodedString(), sha256: consent.signatureSHA256,
            verified: digest == consent.signatureSHA256,
            signedWhere: consent.source == RecordSource.patientPortal ? "Signed by the patient at home, on their own pages (signed in with a one-time link)."
                : "Signed at the clinic."))
    }
}

/// Publishing consent text versions.
enum ConsentTexts {
    static func publish(title: String, body: String, clinicID: UUID, by userID: UUID, at now: Date, on db: any Database) async throws -> ConsentTemplate {
        var issues: [FieldIssue] = []
        let title = title.trimmingCharacters(in: .whitespacesAndNewlines)
        let body = body.trimmingCharacters(in: .whitespacesAndNewlines)
        if title.isEmpty || title.count > 200 { issues.append(FieldIssue(path: "title", problem: "is required (at most 200 characters)")) }
        if body.count < 50 { issues.append(FieldIssue(path: "body", problem: "the consent text is too short (at least 50 characters)")) }
        if let issue = TextLimits.issue(body, "body", max: TextLimits.consentText) { issues.append(issue) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        // The next version number and the new text are one unit of work; two publishing at once: one gets 409.
        return try await Writes.transaction(db) { db in
            let last = try await ConsentTemplate.query(on: db).filter(\.$clinic.$id == clinicID).sort(\.$version, .descending).first()
            let template = ConsentTemplate()
            template.$clinic.id = clinicID
            template.version = (last?.version ?? 0) + 1
            template.title = title
            template.body = body
            template.createdAt = now
            template.createdBy = userID
            do {
                try await template.create(on: db)
            } catch let error as any DatabaseError where error.isConstraintFailure {
                throw Abort(.conflict, reason: "Someone published a consent text at the same moment; reload and try again.")
            }
            return template
        }
    }

    /// The demo clinic's consent text (fictional clinic; a real clinic writes its own with its lawyers).
    static let demoTitle = "Consent to microneedling (collagen induction therapy)"
    static let demoBody = """
    I agree to microneedling of the areas and at the depths in my treatment plan, by the practitioner named in my record.

    It has been explained to me that a pen with fine needles makes small punctures in the skin; that a numbing cream is used; \
    that my skin will be red and tender like a sunburn for some days, depending on the depth; and that I must avoid direct sun \
    and use a mineral sunscreen as the aftercare sheet says.

    Possible effects include redness, swelling, pinpoint bleeding, dryness, flaking, bruising, infection, changes in skin colour \
    and, rarely, scarring or an allergic reaction. Results vary and usually need a series of sessions.

    I have told the clinic about my health, medicines, allergies and recent treatments truthfully, and I will tell them of any change. \
    I may withdraw my consent at any time before or during the treatment.
    """
}
