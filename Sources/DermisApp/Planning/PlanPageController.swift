import DermisCore
import Vapor

/// The first clinical page: pick zones and indications on the face map, see the engine's plan and aftercare.
struct PlanPageController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("plan", use: show).access(.staff(AccessRule.anyStaff))
        routes.post("plan", use: submit).access(.staff(AccessRule.anyStaff))
        let patientPlans = routes.grouped("patients", ":patientID", "plans")
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Patient")
        patientPlans.get("new", use: newPatientPlan).access(clinical)
        patientPlans.post("preview", use: previewPatientPlan).access(clinical)
        patientPlans.post(use: savePatientPlan).access(clinical)
        routes.post("api", "v1", "patients", ":patientID", "plans", use: apiSavePlan).access(clinical)
    }

    struct PlanBody: Decodable {
        let request: PlanRequest
        let adjustments: [PlanAdjustment]?
        /// A physician's reason for planning a zone the current screening did not check.
        let unscreenedOverrideReason: String?
    }

    struct SavedPlan: Content {
        let planID: UUID
        let version: Int
        let plan: PlanResult
    }

    /// `POST /api/v1/patients/{id}/plans` with `{"request": <plan request>, "adjustments": [...]}`; the licensed maximum
    /// is the signed-in practitioner's own when one is set.
    func apiSavePlan(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let body = try req.decodeJSON(PlanBody.self)
        var request = body.request
        if let depth = staff.maxDepthMm { request.practitionerMaxDepthMm = depth }
        let record = try await req.audited(.create, objectType: "TreatmentPlan", patientID: patient.id) {
            try await TreatmentService(req: req, patient: patient, staff: staff).savePlan(request, adjustments: body.adjustments ?? [],
                                                                                         unscreenedOverrideReason: body.unscreenedOverrideReason)
        }
        return try await SavedPlan(planID: try record.requireID(), version: record.version, plan: try record.plan).encodeResponse(status: .created, for: req)
    }

    // MARK: A patient's plan: the same form, the practitioner's own limit, adjustments, saved as a version.

    func newPatientPlan(req: Request) async throws -> View {
        let patient = try await req.audited(.read, objectType: "Patient") { try await req.patient() }
        let clinic = try await req.clinic()
        var form = PlanForm(startDate: req.today(in: clinic).description)
        if let intake = try await ScreeningService(req: req, patient: patient).latestIntake()?.intake {
            for zone in intake.treatmentZones {
                form.selectedZones[zone] = req.dermis.clinicalProtocol.indications.first { $0.zones?.contains(zone) ?? true }?.id ?? ""
            }
            form.fitzpatrick = String(intake.fitzpatrickType)
        }
        if let depth = req.principal?.maxDepthMm { form.maxDepth = formatMillimetres(depth) }
        return try await render(req, form: form, result: nil, issues: [], patient: patient)
    }

    func previewPatientPlan(req: Request) async throws -> Response {
        let patient = try await req.patient()
        let form = PlanForm(fields: try req.content.decode([String: String].self), principal: req.principal)
        do {
            let result = try Planning.plan(try form.planRequest(protocol: req.dermis.clinicalProtocol), today: req.today(in: try await req.clinic()),
                                           protocol: req.dermis.clinicalProtocol)
            return try await render(req, form: form, result: result, issues: [], patient: patient).encodeResponse(for: req)
        } catch let invalid as InvalidInput {
            return try await render(req, form: form, result: nil, issues: invalid.issues, patient: patient).response(.unprocessableEntity, for: req)
        }
    }

    func savePatientPlan(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let fields = try req.content.decode([String: String].self)
        let form = PlanForm(fields: fields, principal: req.principal)
        let p = req.dermis.clinicalProtocol
        do {
            let request = try form.planRequest(protocol: p)
            _ = try await req.audited(.create, objectType: "TreatmentPlan", patientID: patient.id) {
                try await TreatmentService(req: req, patient: patient, staff: staff).savePlan(request, adjustments: try form.adjustments(fields),
                                                                                             unscreenedOverrideReason: fields["unscreenedOverrideReason"])
            }
            return req.redirect(to: "/patients/\(try patient.requireID())/course", redirectType: .normal)
        } catch let invalid as InvalidInput {
            let result = try? Planning.plan(try form.planRequest(protocol: p), today: req.today(in: try await req.clinic()), protocol: p)
            return try await render(req, form: form, result: result, issues: invalid.issues, patient: patient).response(.unprocessableEntity, for: req)
        }
    }

    func show(req: Request) async throws -> View {
        let clinic = try await req.clinic()
        var form = PlanForm(startDate: req.today(in: clinic).description)
        if let depth = req.principal?.maxDepthMm { form.maxDepth = formatMillimetres(depth) }
        return try await render(req, form: form, result: nil, issues: [])
    }

    func submit(req: Request) async throws -> Response {
        let fields = (try? req.content.decode([String: String].self)) ?? [:]
        let form = PlanForm(fields: fields)
        let p = req.dermis.clinicalProtocol
        do {
            let request = try form.planRequest(protocol: p)
            let result = try Planning.plan(request, today: req.today(in: try await req.clinic()), protocol: p)
            return try await render(req, form: form, result: result, issues: []).encodeResponse(for: req)
        } catch let invalid as InvalidInput {
            return try await render(req, form: form, result: nil, issues: invalid.issues).response(.unprocessableEntity, for: req)
        }
    }

    private func render(_ req: Request, form: PlanForm, result: PlanResult?, issues: [FieldIssue], patient: Patient? = nil) async throws -> View {
        let p = req.dermis.clinicalProtocol
        let base = patient.map { "/patients/\($0.id!)/plans" }
        let page = PlanPage(
            formAction: base.map { "\($0)/preview" } ?? "/plan", saveAction: base, patientName: patient.map { $0.fullName },
            practitionerLimitFixed: patient != nil && req.principal?.maxDepthMm != nil,
            page: try await PageHeader(req, title: "Plan a treatment"),
            zoneGroups: [ZoneGroup(title: "Face", zones: form.zoneOptions(protocol: p, region: "face")),
                         ZoneGroup(title: "Neck and body", zones: form.zoneOptions(protocol: p, region: "body"))],
            skins: SkinThickness.allCases.map { Option(id: $0.rawValue, name: $0.rawValue.capitalized, selected: form.skin == $0.rawValue) },
            devices: p.devices.map { Option(id: $0.id, name: $0.displayName, selected: form.device == $0.id) },
            maxDepth: form.maxDepth, startDate: form.startDate, fitzpatrick: form.fitzpatrick,
            errors: issues.map { ErrorLine(field: PlanForm.fieldName(forPath: $0.path), message: $0.problem) },
            result: result.map { PlanView($0, protocol: p, form: form) })
        return try await req.view.render("plan", page)
    }
}

/// The plan form as typed, kept as text so a refused form comes back exactly as it was sent.
struct PlanForm {
    var selectedZones: [String: String] = [:]
    var skin = SkinThickness.thick.rawValue
    var device = "skinpen"
    var maxDepth = "1.5"
    var startDate = ""
    var fitzpatrick = ""
    var adjustmentFields: [String: String] = [:]

    init(startDate: String) {
        self.startDate = startDate
    }

    /// Reads `zone_<id>=on` with `indication_<id>=<indication>` pairs and the plain fields.
    /// A patient's plan always uses the signed-in practitioner's licensed maximum, whatever the form says.
    init(fields: [String: String], principal: Principal?) {
        self.init(fields: fields)
        if let depth = principal?.maxDepthMm { maxDepth = formatMillimetres(depth) }
        adjustmentFields = fields.filter { $0.key.hasPrefix("depth_") || $0.key.hasPrefix("passes_") }
    }

    /// `depth_<zone>` and `passes_<zone>` typed into the plan table, as adjustments; a blank keeps the engine's value.
    func adjustments(_ fields: [String: String]) throws -> [PlanAdjustment] {
        var issues: [FieldIssue] = []
        var result: [PlanAdjustment] = []
        for zone in selectedZones.keys.sorted() {
            var change = PlanAdjustment(zone: zone)
            if let text = fields["depth_\(zone)"]?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
                if let depth = Double(text) { change.depthMm = depth } else { issues.append(FieldIssue(path: "depth.\(zone)", problem: "'\(text)' is not a depth in mm")) }
            }
            if let text = fields["passes_\(zone)"]?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
                if let passes = Int(text) { change.passes = passes } else { issues.append(FieldIssue(path: "passes.\(zone)", problem: "'\(text)' is not a number of passes")) }
            }
            if change.depthMm != nil || change.passes != nil { result.append(change) }
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return result
    }

    init(fields: [String: String]) {
        for (key, value) in fields where key.hasPrefix("zone_") && value == "on" {
            let zone = String(key.dropFirst("zone_".count))
            selectedZones[zone] = fields["indication_\(zone)"] ?? ""
        }
        skin = fields["skin"] ?? ""
        device = fields["device"] ?? ""
        maxDepth = fields["maxDepth"] ?? ""
        startDate = fields["startDate"] ?? ""
        fitzpatrick = fields["fitzpatrick"] ?? ""
    }

    /// The engine's request, in the order the protocol lists zones; text that is not a number or date is refused here.
    func planRequest(protocol p: ClinicalProtocol) throws -> PlanRequest {
        var issues: [FieldIssue] = []
        let order = p.zones.map(\.id)
        let zones = selectedZones.keys.sorted { (order.firstIndex(of: $0) ?? .max, $0) < (order.firstIndex(of: $1) ?? .max, $1) }
            .map { PlanRequest.ZoneIndication(zone: $0, indication: selectedZones[$0]!) }
        let depth = Double(maxDepth.trimmingCharacters(in: .whitespaces))
        if depth == nil { issues.append(FieldIssue(path: "practitionerMaxDepthMm", problem: "'\(maxDepth)' is not a depth in mm")) }
        var start: CalendarDate?
        if !startDate.isEmpty {
            start = CalendarDate(iso: startDate)
            if start == nil { issues.append(FieldIssue(path: "startDate", problem: "'\(startDate)' is not a real date (YYYY-MM-DD)")) }
        }
        var type: Int?
        if !fitzpatrick.isEmpty {
            type = Int(fitzpatrick)
            if type == nil { issues.append(FieldIssue(path: "fitzpatrickType", problem: "'\(fitzpatrick)' is not a type from 1 to 6")) }
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        var request = PlanRequest(zones: zones, skin: .thick, fitzpatrickType: type, device: device,
                                  practitionerMaxDepthMm: depth!, startDate: start)
        request.skin = skin
        return request
    }

    func zoneOptions(protocol p: ClinicalProtocol, region: String) -> [ZoneOption] {
        p.zones.filter { $0.region == region }.map { zone in
            let chosen = selectedZones[zone.id]
            let indications = p.indications.filter { $0.zones?.contains(zone.id) ?? true }
            return ZoneOption(
                id: zone.id, name: zone.displayName, checked: chosen != nil,
                indications: indications.map { Option(id: $0.id, name: $0.displayName, selected: chosen == $0.id) })
        }
    }

    /// The form field an engine path belongs to, so the message can stand beside it.
    static func fieldName(forPath path: String) -> String {
        if path.hasPrefix("zones") { return "zones" }
        return ["practitionerMaxDepthMm": "maxDepth", "fitzpatrickType": "fitzpatrick"][path] ?? path
    }
}

struct ZoneOption: Encodable {
    let id: String
    let name: String
    let checked: Bool
    let indications: [Option]
}

struct ZoneGroup: Encodable {
    let title: String
    let zones: [ZoneOption]
}

struct PlanPage: Encodable {
    let formAction: String
    let saveAction: String?
    let patientName: String?
    let practitionerLimitFixed: Bool
    let page: PageHeader
    let zoneGroups: [ZoneGroup]
    let skins: [Option]
    let devices: [Option]
    let maxDepth: String
    let startDate: String
    let fitzpatrick: String
    let errors: [ErrorLine]
    let result: PlanView?
}

/// The plan as the page shows it: names instead of ids, depths as clinicians write them.
struct PlanView: Encodable {
    struct Zone: Encodable {
        let id: String
        let name: String
        let indication: String
        let depth: String
        let recommended: String
        let limitedBy: String?
        let limitReason: String?
        let range: String
        let depthSource: String
        let passes: Int
        let pattern: String
        let channels: Int
        let secondsInZone: Int
        let notes: [PlanNote]
        let depthInput: String
        let passesInput: String
    }

    struct Aftercare: Encodable {
        let window: String
        let instruction: String
        let source: String
    }

    let zones: [Zone]
    let numbingMinutes: Int
    let procedureMinutes: Int
    let appointmentMinutes: Int
    let sessions: Int
    let minIntervalDays: Int
    let proposedDates: [String]
    let seriesSources: [String]
    let downtime: String
    let downtimeSource: String
    let aftercare: [Aftercare]
    let protocolVersion: String

    init(_ plan: PlanResult, protocol p: ClinicalProtocol, form: PlanForm) {
        zones = plan.zones.map { z in
            Zone(id: z.zone, name: p.zone(z.zone)?.displayName ?? z.zone,
                 indication: p.indication(z.indication)?.displayName ?? z.indication,
                 depth: formatMillimetres(z.depthMm), recommended: formatMillimetres(z.recommendedDepthMm),
                 limitedBy: z.limitedBy, limitReason: z.limitReason,
                 range: "\(formatMillimetres(z.depthRangeMm.min))–\(formatMillimetres(z.depthRangeMm.max))",
                 depthSource: z.depthSource, passes: z.passes, pattern: z.pattern,
                 channels: z.estimatedChannelsPerCm2, secondsInZone: z.secondsInZone, notes: z.notes,
                 depthInput: form.adjustmentFields["depth_\(z.zone)"] ?? formatMillimetres(z.depthMm),
                 passesInput: form.adjustmentFields["passes_\(z.zone)"] ?? String(z.passes))
        }
        numbingMinutes = plan.numbingMinutes
        procedureMinutes = plan.procedureMinutes
        appointmentMinutes = plan.appointmentMinutes
        sessions = plan.series.sessions
        minIntervalDays = plan.series.minIntervalDays
        proposedDates = plan.series.proposedDates.map(\.description)
        seriesSources = plan.series.sources
        downtime = "\(plan.downtimeDays.min)–\(plan.downtimeDays.max) days"
        downtimeSource = plan.downtimeDays.source
        aftercare = plan.aftercare.map {
            Aftercare(window: AftercareWindow(fromHour: $0.fromHour, toHour: $0.toHour).words, instruction: $0.instruction, source: $0.source)
        }
        protocolVersion = plan.protocolVersion
    }
}
