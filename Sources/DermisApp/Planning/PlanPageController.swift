import DermisCore
import Vapor

/// The first clinical page: pick zones and indications on the face map, see the engine's plan and aftercare.
struct PlanPageController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("plan", use: show).access(.staff(AccessRule.anyStaff))
        routes.post("plan", use: submit).access(.staff(AccessRule.anyStaff))
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

    private func render(_ req: Request, form: PlanForm, result: PlanResult?, issues: [FieldIssue]) async throws -> View {
        let p = req.dermis.clinicalProtocol
        let page = PlanPage(
            page: try await PageHeader(req, title: "Plan a treatment"),
            zoneGroups: [ZoneGroup(title: "Face", zones: form.zoneOptions(protocol: p, region: "face")),
                         ZoneGroup(title: "Neck and body", zones: form.zoneOptions(protocol: p, region: "body"))],
            skins: SkinThickness.allCases.map { Option(id: $0.rawValue, name: $0.rawValue.capitalized, selected: form.skin == $0.rawValue) },
            devices: p.devices.map { Option(id: $0.id, name: $0.displayName, selected: form.device == $0.id) },
            maxDepth: form.maxDepth, startDate: form.startDate, fitzpatrick: form.fitzpatrick,
            errors: issues.map { ErrorLine(field: PlanForm.fieldName(forPath: $0.path), message: $0.problem) },
            result: result.map { PlanView($0, protocol: p) })
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

    init(startDate: String) {
        self.startDate = startDate
    }

    /// Reads `zone_<id>=on` with `indication_<id>=<indication>` pairs and the plain fields.
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

struct Option: Encodable {
    let id: String
    let name: String
    let selected: Bool
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

struct ErrorLine: Encodable {
    let field: String
    let message: String

    /// One line per problem, each saying its field.
    static func list(_ invalid: InvalidInput) -> [ErrorLine] {
        invalid.issues.map { ErrorLine(field: $0.path, message: $0.description) }
    }
}

struct PlanPage: Encodable {
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

    init(_ plan: PlanResult, protocol p: ClinicalProtocol) {
        zones = plan.zones.map { z in
            Zone(id: z.zone, name: p.zone(z.zone)?.displayName ?? z.zone,
                 indication: p.indication(z.indication)?.displayName ?? z.indication,
                 depth: formatMillimetres(z.depthMm), recommended: formatMillimetres(z.recommendedDepthMm),
                 limitedBy: z.limitedBy, limitReason: z.limitReason,
                 range: "\(formatMillimetres(z.depthRangeMm.min))–\(formatMillimetres(z.depthRangeMm.max))",
                 depthSource: z.depthSource, passes: z.passes, pattern: z.pattern,
                 channels: z.estimatedChannelsPerCm2, secondsInZone: z.secondsInZone, notes: z.notes)
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
