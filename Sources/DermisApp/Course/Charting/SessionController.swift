import DermisCore
import Fluent
import Vapor

/// The charted session: checklist in procedure order, numbing timer, pen and cartridge, zones, signing, amendments.
struct SessionController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Patient")
        let sessions = routes.grouped("patients", ":patientID", "sessions")
        sessions.post(use: start).access(clinical)
        sessions.get(":chartID", use: show).access(clinical)
        sessions.post(":chartID", use: save).access(clinical)
        sessions.post(":chartID", "numbing", use: numbing).access(clinical)
        sessions.post(":chartID", "sign", use: sign).access(clinical)
        sessions.post(":chartID", "amend", use: amend).access(clinical)
        let api = routes.grouped("api", "v1", "patients", ":patientID", "sessions")
        api.post(use: apiStart).access(clinical)
        api.get(":chartID", use: apiRead).access(clinical)
        api.put(":chartID", use: apiSave).access(clinical)
        api.post(":chartID", "numbing", use: apiNumbing).access(clinical)
        api.post(":chartID", "sign", use: apiSign).access(clinical)
        api.post(":chartID", "amendments", use: apiAmend).access(clinical)
    }

    private func service(_ req: Request) async throws -> TreatmentService {
        TreatmentService(req: req, patient: try await req.patient(), staff: try req.staff())
    }

    private func chartID(_ req: Request) throws -> UUID { try req.uuidParameter("chartID", notFound: "No such session.") }

    // MARK: Pages

    func start(req: Request) async throws -> Response {
        let service = try await service(req)
        do {
            let session = try await req.audited(.create, objectType: "TreatmentSession", patientID: service.patient.id) { try await service.startSession() }
            return req.redirect(to: "/patients/\(service.patientID)/sessions/\(session.chartID)", redirectType: .normal)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await req.view.render("session-blocked", Blocked(page: try await PageHeader(req, title: "Session"),
                                                                         patientID: service.patientID.uuidString, problems: try await service.startProblems()))
                .response(.conflict, for: req)
        }
    }

    struct Blocked: Encodable {
        let page: PageHeader
        let patientID: String
        let problems: [String]
    }

    struct ZoneRow: Encodable {
        let zone: String
        let name: String
        let planned: String
        let depth: String
        let passes: Int
        let pattern: String
        let seconds: Int
        let channels: String
    }

    struct VersionRow: Encodable {
        let version: Int
        let status: String
        let signedAt: String
        let signedBy: String
        let reason: String
    }

    struct SessionPage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let chartID: String
        let version: Int
        let signed: Bool
        let identityConfirmed: Bool
        let skinCleansed: Bool
        let anaestheticAppliedAt: String?
        let numbingMinutesSoFar: Int?
        let numbingMinimum: Int
        let numbingOverrideReason: String
        let devices: [Option]
        let lots: [Option]
        let lotChosen: String?
        let zones: [ZoneRow]
        let painScore: String
        let erythemaGrade: String
        let pinpointBleeding: Bool
        let notes: String
        let history: [VersionRow]
        let errors: [ErrorLine]
    }

    func show(req: Request) async throws -> View {
        try await render(req, errors: [])
    }

    /// The chart page; after a refusal, `typed` shows what was sent rather than what is stored, so nothing typed is lost.
    private func render(_ req: Request, errors: [ErrorLine], typed: TreatmentService.ChartChanges? = nil) async throws -> View {
        let service = try await service(req)
        let id = try chartID(req)
        let session = try await req.audited(.read, objectType: "TreatmentSession", objectID: id.uuidString, patientID: service.patient.id) {
            try await service.latestVersion(of: id)
        }
        let p = req.dermis.clinicalProtocol
        let plan = try await TreatmentPlanRecord.require(session.$plan.id, on: req.db).plan
        let stock = Inventory(db: req.db, clinicID: service.staff.clinicID)
        let today = try await req.today(in: req.clinic())
        let lots = try await stock.lots().filter { $0.problem(on: today) == nil || $0.id == session.$lot.id }
        let history = try await service.history(of: id)
        let names = try await StaffAccounts.names(in: service.staff.clinicID, on: req.db)
        let now = req.dermis.clock.now()
        return try await req.view.render("session", SessionPage(
            page: try await PageHeader(req, title: "Session chart"), patientID: service.patientID.uuidString,
            patientName: service.patient.fullName, chartID: id.uuidString, version: session.version,
            signed: session.isSigned, identityConfirmed: typed?.identityConfirmed ?? session.identityConfirmed,
            skinCleansed: typed?.skinCleansed ?? session.skinCleansed,
            anaestheticAppliedAt: session.anaestheticAppliedAt.map(AuditLog.isoMilliseconds),
            numbingMinutesSoFar: session.anaestheticAppliedAt.map { Int(now.timeIntervalSince($0) / 60) },
            numbingMinimum: p.anaesthetic.minimumMinutes, numbingOverrideReason: typed?.numbingOverrideReason ?? session.numbingOverrideReason ?? "",
            devices: try await stock.devices(activeOnly: true).map {
                Option(id: $0.id!.uuidString, name: "\($0.model) · \($0.serial)", selected: $0.id == (typed?.deviceID ?? session.$device.id))
            },
            lots: lots.map {
                Option(id: $0.id!.uuidString, name: "\($0.lotNumber) · expires \($0.expiry) · \($0.quantityRemaining) left",
                       selected: $0.id == (typed?.lotID ?? session.$lot.id))
            },
            lotChosen: session.$lot.id?.uuidString,
            zones: (typed?.zones ?? session.zones).map { zone in
                ZoneRow(zone: zone.zone, name: p.zone(zone.zone)?.displayName ?? zone.zone,
                        planned: plan.zones.first { $0.zone == zone.zone }.map { formatMillimetres($0.depthMm) } ?? "—",
                        depth: formatMillimetres(zone.depthMm), passes: zone.passes, pattern: zone.pattern, seconds: zone.secondsInZone,
                        channels: zone.estimatedChannelsPerCm2.map(String.init) ?? "—")
            },
            painScore: (typed?.painScore ?? session.painScore).map(String.init) ?? "",
            erythemaGrade: (typed?.erythemaGrade ?? session.erythemaGrade).map(String.init) ?? "",
            pinpointBleeding: typed?.pinpointBleeding ?? session.pinpointBleeding ?? false, notes: typed?.notes ?? session.notes,
            history: history.filter(\.isSigned).map {
                VersionRow(version: $0.version, status: $0.amendmentReason == nil ? "signed" : "amended",
                           signedAt: $0.signedAt.map(AuditLog.isoMilliseconds) ?? "", signedBy: $0.signedBy.flatMap { names[$0] } ?? "",
                           reason: $0.amendmentReason ?? "")
            },
            errors: errors))
    }

    /// The chart form's fields.
    struct ChartForm: Content {
        var version: String?
        var identityConfirmed: String?
        var skinCleansed: String?
        var numbingOverrideReason: String?
        var device: String?
        var lot: String?
        var painScore: String?
        var erythemaGrade: String?
        var pinpointBleeding: String?
        var notes: String?
        var amendmentReason: String?
    }

    /// Reads the form, including `depth_<zone>`, `passes_<zone>`, `pattern_<zone>`, `seconds_<zone>` for each charted zone.
    private func changes(_ req: Request, current: TreatmentSession) throws -> (Int, TreatmentService.ChartChanges, String) {
        let form = try req.content.decode(ChartForm.self)
        let fields = try req.content.decode([String: String].self)
        var issues: [FieldIssue] = []
        guard let version = Int(form.version ?? "") else { throw InvalidInput(path: "version", problem: "is missing; reload the page") }
        func number(_ key: String) -> Int? {
            guard let text = fields[key]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            guard let value = Int(text) else { issues.append(FieldIssue(path: key, problem: "'\(text)' is not a whole number")); return nil }
            return value
        }
        var zones: [ChartedZone] = []
        for zone in current.zones {
            let depthText = fields["depth_\(zone.zone)"]?.trimmingCharacters(in: .whitespaces) ?? ""
            guard let depth = Double(depthText) else {
                issues.append(FieldIssue(path: "depth_\(zone.zone)", problem: "'\(depthText)' is not a depth in mm"))
                continue
            }
            zones.append(ChartedZone(zone: zone.zone, depthMm: depth, passes: number("passes_\(zone.zone)") ?? zone.passes,
                                     pattern: fields["pattern_\(zone.zone)"].flatMap { $0.isEmpty ? nil : $0 } ?? zone.pattern,
                                     secondsInZone: number("seconds_\(zone.zone)") ?? zone.secondsInZone))
        }
        let changes = TreatmentService.ChartChanges(
            identityConfirmed: form.identityConfirmed == "on", skinCleansed: form.skinCleansed == "on",
            numbingOverrideReason: form.numbingOverrideReason.flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 },
            deviceID: form.device.flatMap(UUID.init(uuidString:)) ?? (current.isSigned ? current.$device.id : nil),
            lotID: form.lot.flatMap(UUID.init(uuidString:)), zones: zones,
            painScore: number("painScore"), erythemaGrade: number("erythemaGrade"), pinpointBleeding: form.pinpointBleeding == "on",
            notes: form.notes ?? "")
        if !issues.isEmpty { throw InvalidInput(issues) }
        return (version, changes, form.amendmentReason ?? "")
    }

    /// Runs a chart operation for a page: audited, then back to the chart; refusals re-render it with the reasons.
    private func pageOperation(_ req: Request, _ action: AuditAction,
                               _ body: @escaping (TreatmentService, TreatmentSession) async throws -> TreatmentSession) async throws -> Response {
        let service = try await service(req)
        let id = try chartID(req)
        do {
            _ = try await req.audited(action, objectType: "TreatmentSession", objectID: id.uuidString, patientID: service.patient.id) {
                try await body(service, try await service.latestVersion(of: id))
            }
            return req.redirect(to: "/patients/\(service.patientID)/sessions/\(id)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            let current = try await service.latestVersion(of: id)
            let typed = try? changes(req, current: current).1
            return try await render(req, errors: ErrorLine.list(invalid), typed: typed).response(.unprocessableEntity, for: req)
        } catch let abort as any AbortError where abort.status == .conflict || abort.status == .forbidden {
            return try await render(req, errors: [ErrorLine(field: "chart", message: abort.reason)]).response(abort.status, for: req)
        }
    }

    func save(req: Request) async throws -> Response {
        try await pageOperation(req, .update) { service, current in
            let (version, changes, _) = try self.changes(req, current: current)
            return try await service.saveDraft(current.chartID, expectedVersion: version, changes: changes)
        }
    }

    func numbing(req: Request) async throws -> Response {
        try await pageOperation(req, .update) { service, current in
            let version = Int(try req.content.decode(ChartForm.self).version ?? "") ?? -1
            return try await service.recordNumbing(current.chartID, expectedVersion: version)
        }
    }

    func sign(req: Request) async throws -> Response {
        try await pageOperation(req, .update) { service, current in
            let version = Int(try req.content.decode(ChartForm.self).version ?? "") ?? -1
            return try await service.signChart(current.chartID, expectedVersion: version)
        }
    }

    func amend(req: Request) async throws -> Response {
        try await pageOperation(req, .update) { service, current in
            let (version, changes, reason) = try self.changes(req, current: current)
            return try await service.amend(current.chartID, expectedVersion: version, reason: reason, changes: changes)
        }
    }

    // MARK: API

    struct ChartJSON: Content {
        let chartID: UUID
        let version: Int
        let status: String
        let planID: UUID
        let consentID: UUID
        let screeningID: UUID
        let practitionerID: UUID
        let deviceID: UUID?
        let lotID: UUID?
        let identityConfirmed: Bool
        let skinCleansed: Bool
        let anaestheticAppliedAt: Date?
        let numbingOverrideReason: String?
        let zones: [ChartedZone]
        let painScore: Int?
        let erythemaGrade: Int?
        let pinpointBleeding: Bool?
        let notes: String
        let signedAt: Date?
        let amendmentReason: String?

        init(_ s: TreatmentSession) {
            chartID = s.chartID
            version = s.version
            status = s.status
            planID = s.$plan.id
            consentID = s.$consent.id
            screeningID = s.$screening.id
            practitionerID = s.practitionerID
            deviceID = s.$device.id
            lotID = s.$lot.id
            identityConfirmed = s.identityConfirmed
            skinCleansed = s.skinCleansed
            anaestheticAppliedAt = s.anaestheticAppliedAt
            numbingOverrideReason = s.numbingOverrideReason
            zones = s.zones
            painScore = s.painScore
            erythemaGrade = s.erythemaGrade
            pinpointBleeding = s.pinpointBleeding
            notes = s.notes
            signedAt = s.signedAt
            amendmentReason = s.amendmentReason
        }
    }

    /// The body of a chart save or amendment.
    struct ChartInput: Decodable {
        var identityConfirmed: Bool?
        var skinCleansed: Bool?
        var numbingOverrideReason: String?
        var deviceID: UUID?
        var lotID: UUID?
        var zones: [ChartedZone]?
        var painScore: Int?
        var erythemaGrade: Int?
        var pinpointBleeding: Bool?
        var notes: String?
        var reason: String?

        func changes(over current: TreatmentSession) -> TreatmentService.ChartChanges {
            .init(identityConfirmed: identityConfirmed ?? current.identityConfirmed, skinCleansed: skinCleansed ?? current.skinCleansed,
                  numbingOverrideReason: numbingOverrideReason ?? current.numbingOverrideReason, deviceID: deviceID ?? current.$device.id,
                  lotID: lotID ?? current.$lot.id, zones: zones ?? current.zones, painScore: painScore ?? current.painScore,
                  erythemaGrade: erythemaGrade ?? current.erythemaGrade, pinpointBleeding: pinpointBleeding ?? current.pinpointBleeding,
                  notes: notes ?? current.notes)
        }
    }

    private func respond(_ session: TreatmentSession, status: HTTPStatus = .ok, for req: Request) async throws -> Response {
        let response = try await ChartJSON(session).encodeResponse(status: status, for: req)
        response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(session.version)\"")
        return response
    }

    private func apiOperation(_ req: Request, _ action: AuditAction, status: HTTPStatus = .ok,
                              _ body: @escaping (TreatmentService, TreatmentSession) async throws -> TreatmentSession) async throws -> Response {
        let service = try await service(req)
        let id = try chartID(req)
        let session = try await req.audited(action, objectType: "TreatmentSession", objectID: id.uuidString, patientID: service.patient.id) {
            try await body(service, try await service.latestVersion(of: id))
        }
        return try await respond(session, status: status, for: req)
    }

    func apiStart(req: Request) async throws -> Response {
        let service = try await service(req)
        let session = try await req.audited(.create, objectType: "TreatmentSession", patientID: service.patient.id) { try await service.startSession() }
        return try await respond(session, status: .created, for: req)
    }

    func apiRead(req: Request) async throws -> Response {
        try await apiOperation(req, .read) { _, current in current }
    }

    func apiSave(req: Request) async throws -> Response {
        try await apiOperation(req, .update) { service, current in
            try await service.saveDraft(current.chartID, expectedVersion: try req.ifMatchVersion(), changes: try req.decodeJSON(ChartInput.self).changes(over: current))
        }
    }

    func apiNumbing(req: Request) async throws -> Response {
        try await apiOperation(req, .update) { service, current in
            try await service.recordNumbing(current.chartID, expectedVersion: try req.ifMatchVersion())
        }
    }

    func apiSign(req: Request) async throws -> Response {
        try await apiOperation(req, .update) { service, current in
            try await service.signChart(current.chartID, expectedVersion: try req.ifMatchVersion())
        }
    }

    func apiAmend(req: Request) async throws -> Response {
        try await apiOperation(req, .update, status: .created) { service, current in
            let input = try req.decodeJSON(ChartInput.self)
            return try await service.amend(current.chartID, expectedVersion: try req.ifMatchVersion(), reason: input.reason ?? "", changes: input.changes(over: current))
        }
    }
}
