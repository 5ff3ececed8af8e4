import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// Plans, consents and session charts of one patient: every rule of the course that is not the engine's lives here,
/// shared by the pages and the JSON API.
struct TreatmentService {
    let req: Request
    let patient: Patient
    let staff: Principal

    var db: any Database { req.db }
    var p: ClinicalProtocol { req.dermis.clinicalProtocol }
    var now: Date { req.dermis.clock.now() }
    var patientID: UUID { patient.id! }

    // MARK: Plans

    /// The service acting for the patient on their own pages: the patient's id stands as the actor of what they record
    /// (their intake, their signature), with the least of roles, so no clinical step (a plan, a chart) can start from it.
    static func forPatient(req: Request, patient: Patient) throws -> TreatmentService {
        TreatmentService(req: req, patient: patient, staff: Principal(
            userID: try patient.requireID(), clinicID: patient.$clinic.id, email: AuditLog.patientActor, name: patient.fullName,
            role: .frontDesk, maxDepthMm: nil, sessionID: nil, stage: .full))
    }

    /// Runs the engine, applies the practitioner's adjustments and saves the result as the next plan version. A zone the
    /// current screening did not check is refused — unless a physician documents why (`unscreenedOverrideReason`), which
    /// is stored with the plan and audited.
    func savePlan(_ request: PlanRequest, adjustments: [PlanAdjustment], unscreenedOverrideReason: String? = nil) async throws -> TreatmentPlanRecord {
        let today = try await req.today(in: req.clinic())
        let engine = try Planning.plan(request, today: today, protocol: p)
        let adjusted = try Planning.adjust(engine, with: adjustments, request: request, protocol: p)
        let zones = request.zones.map(\.zone)
        let unscreened = try await unscreened(zones) { "zones[\($0)].zone" }
        let reason = unscreenedOverrideReason?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var overridden: [String] = []
        if !unscreened.isEmpty {
            guard !reason.isEmpty else { throw InvalidInput(unscreened) }
            try await requirePhysicianOverride(reason)
            let screened = try await screenedZones()
            overridden = zones.filter { !screened.contains($0) }
            try await requireNoRuleFires(for: overridden, on: today)
        }
        let last = try await TreatmentPlanRecord.query(on: db).filter(\.$patient.$id == patientID).sort(\.$version, .descending).first()
        let record = TreatmentPlanRecord()
        record.$patient.id = patientID
        record.version = (last?.version ?? 0) + 1
        record.request = String(decoding: try ContractJSON.encode(request), as: UTF8.self)
        record.result = String(decoding: try ContractJSON.encode(adjusted), as: UTF8.self)
        record.adjustments = String(decoding: try ContractJSON.encode(adjustments), as: UTF8.self)
        record.protocolVersion = p.version
        record.createdAt = now
        record.createdBy = staff.userID
        if !overridden.isEmpty {
            record.unscreenedZones = overridden.joined(separator: ",")
            record.unscreenedReason = reason
            record.unscreenedBy = staff.userID
        }
        do {
            try await record.create(on: db)
            if !overridden.isEmpty {
                try await req.audit(.update, objectType: "UnscreenedZoneOverride", objectID: record.id?.uuidString, patientID: patientID,
                                    outcome: .success)
            }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw DomainError.conflict("Someone saved a plan for this patient at the same moment; reload and try again.")
        }
        return record
    }

    func latestPlan() async throws -> TreatmentPlanRecord? {
        try await TreatmentPlanRecord.query(on: db).filter(\.$patient.$id == patientID).sort(\.$version, .descending).first()
    }

    func plan(_ id: UUID) async throws -> TreatmentPlanRecord {
        guard let plan = try await TreatmentPlanRecord.query(on: db).filter(\.$id == id).filter(\.$patient.$id == patientID).first() else {
            throw DomainError.notFound("No such plan.")
        }
        return plan
    }

    // MARK: Consent

    static let maximumSignatureBytes = 256 * 1024
    static let pngMagic: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// A signature pad's drawing: small, so its limits are too (4 million pixels, 64 MB while decoding).
    static let signatureSanitizer = PhotoSanitizer(maxBytes: maximumSignatureBytes, maxPixels: 4_000_000, maxMemory: 64 * 1_048_576)

    func latestTemplate() async throws -> ConsentTemplate? {
        try await ConsentTemplate.query(on: db).filter(\.$clinic.$id == staff.clinicID).sort(\.$version, .descending).first()
    }

    /// The drawn signature's pixels written anew as PNG (no text chunks, no trailing bytes, no bomb): nil when it is not
    /// a PNG within the size limit at all; InvalidInput naming `signature` when it cannot be decoded. Called before the
    /// unit of work opens, so no write waits on a decode.
    static func drawnSignature(_ dataURL: String, on req: Request) async throws -> Data? {
        guard let drawn = decodePNG(dataURL: dataURL) else { return nil }
        let sanitizer = signatureSanitizer
        return try await req.application.imageDecoding.run { try sanitizer.clean(drawn, field: "signature") }.data
    }

    /// Records the patient's signature for a plan: the typed name must be the patient's, the drawing (from
    /// `drawnSignature`) a real PNG.
    func sign(plan: TreatmentPlanRecord, templateID: UUID?, typedName: String, drawing png: Data?, source: String? = nil) async throws -> ConsentRecord {
        var issues: [FieldIssue] = []
        guard let template = try await latestTemplate() else {
            throw DomainError.conflict("The clinic has no consent text yet: an admin publishes one under Consent text.")
        }
        if let templateID, templateID != template.id {
            throw DomainError.conflict("The consent text changed while it was being read; read the current version and sign again.")
        }
        if searchFolded(typedName).split(separator: " ") != searchFolded(patient.fullName).split(separator: " ") {
            issues.append(FieldIssue(path: "typedName", problem: "type the patient's full name as registered: \(patient.fullName)"))
        }
        if png == nil { issues.append(FieldIssue(path: "signature", problem: "sign in the box (a PNG drawing up to 256 KB is expected)")) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let record = ConsentRecord()
        record.$patient.id = patientID
        record.$plan.id = try plan.requireID()
        record.$template.id = try template.requireID()
        record.typedName = typedName.trimmingCharacters(in: .whitespaces)
        record.signaturePNG = png!
        record.signatureSHA256 = Secrets.digest(png!)
        record.signedAt = now
        record.recordedBy = staff.userID
        record.source = source
        try await record.create(on: db)
        return record
    }

    /// `data:image/png;base64,…` (or bare base64) to PNG bytes, when it is a PNG within the size limit.
    static func decodePNG(dataURL: String) -> Data? {
        let base64 = dataURL.hasPrefix("data:image/png;base64,") ? String(dataURL.dropFirst("data:image/png;base64,".count)) : dataURL
        guard base64.count <= maximumSignatureBytes * 4 / 3 + 4, let data = Data(base64Encoded: base64),
              data.count <= maximumSignatureBytes, data.count > 64, Array(data.prefix(8)) == pngMagic else { return nil }
        return data
    }

    func consent(for plan: TreatmentPlanRecord) async throws -> ConsentRecord? {
        try await ConsentRecord.query(on: db).filter(\.$plan.$id == plan.requireID()).sort(\.$signedAt, .descending).first()
    }

    func consent(_ id: UUID) async throws -> ConsentRecord {
        guard let consent = try await ConsentRecord.query(on: db).filter(\.$id == id).filter(\.$patient.$id == patientID).first() else {
            throw DomainError.notFound("No such consent.")
        }
        return consent
    }

    // MARK: Screened zones

    /// A problem for each zone the screening did not check — by default the current one; a chart is checked against the
    /// screening that cleared its session. Only the treatment areas of the intake it read were screened for in-area
    /// contraindications (a toxin in the forehead, a lesion on the cheek). Nothing is screened before the first intake,
    /// so every zone is a problem then.
    func unscreened(_ zones: [String], screening chosen: UUID? = nil, plan: TreatmentPlanRecord? = nil,
                    path: (Int) -> String) async throws -> [FieldIssue] {
        let intake = try await screenedIntake(chosen)
        var screened = Set(intake?.treatmentZones ?? [])
        // A physician's override counts only while the intake in use, screened with the overridden zones, fires no new
        // rule: a later intake that records a toxin in that area takes the zone out again.
        let overridden = (plan?.overriddenZones ?? []).subtracting(screened)
        if !overridden.isEmpty, let intake, try newFindings(adding: Array(overridden), to: intake, on: try await req.today(in: req.clinic())).isEmpty {
            screened.formUnion(overridden)
        }
        return zones.enumerated().filter { !screened.contains($0.element) }.map { index, zone in
            FieldIssue(path: path(index), problem: "the \(p.zone(zone)?.displayName.lowercased() ?? zone) was not among the areas of the intake "
                       + "the current screening checked; take a new intake that includes it (or a physician documents an override)")
        }
    }

    /// An override waives the missing screening of a zone, never a rule: the latest intake's answers are screened again
    /// with the zones added, and any reason that adds (a toxin in that area four weeks ago) refuses the override, named
    /// with its source — a new intake that includes the zone lets a practitioner weigh that rule on its screening.
    private func requireNoRuleFires(for added: [String], on today: CalendarDate) async throws {
        guard let intake = try await screenedIntake(nil) else { return }
        let fired = try newFindings(adding: added, to: intake, on: today)
        guard fired.isEmpty else {
            throw InvalidInput(fired.map { finding in
                FieldIssue(path: "unscreenedOverrideReason",
                           problem: "the intake's answers screened with the \(added.joined(separator: ", ")) give \(finding.kind ?? "a reason") "
                           + "'\(finding.message)' (\(finding.source)); take a new intake that includes the zone so the rule is weighed on its screening")
            })
        }
    }

    /// Reasons the intake's answers give once `added` zones are treated too that they do not give without them (a rule
    /// that fires again with a later end counts as new).
    private func newFindings(adding added: [String], to intake: Intake, on today: CalendarDate) throws -> [RuleFinding] {
        var widened = intake
        widened.treatmentZones += added.filter { !intake.treatmentZones.contains($0) }
        let before = Set(try Screening.screen(intake, on: today, protocol: p).reasons.map { "\($0.rule) \($0.until?.description ?? "")" })
        return try Screening.screen(widened, on: today, protocol: p).reasons.filter { !before.contains("\($0.rule) \($0.until?.description ?? "")") }
    }

    /// The intake behind a screening (by default the current one).
    private func screenedIntake(_ chosen: UUID?) async throws -> Intake? {
        let screening = if let chosen { try await ScreeningRecord.find(chosen, on: db) }
            else { try await ScreeningService(req: req, patient: patient).latestScreening() }
        guard let screening else { return nil }
        return try await IntakeRecord.require(screening.$intake.id, on: db).intake
    }

    /// The areas of the intake behind a screening (by default the current one).
    func screenedZones(screening chosen: UUID? = nil) async throws -> Set<String> {
        Set(try await screenedIntake(chosen)?.treatmentZones ?? [])
    }

    /// Only a physician (the staff member's credential) may plan a zone the screening did not check, with a reason.
    private func requirePhysicianOverride(_ reason: String) async throws {
        let user = try await StaffUser.find(staff.userID, on: db)
        guard user?.credential?.lowercased() == "physician" else {
            throw InvalidInput(path: "unscreenedOverrideReason",
                               problem: "only a physician may plan a zone the screening did not check; take a new intake that includes it")
        }
        if reason.count < 10 {
            throw InvalidInput(path: "unscreenedOverrideReason", problem: "say why the zone is treated without screening it (at least 10 characters)")
        }
        if let issue = TextLimits.issue(reason, "unscreenedOverrideReason", max: TextLimits.reason) { throw InvalidInput([issue]) }
    }

    // MARK: Sessions

    /// What a session needs before it starts, as it stands: the current screening and whether it clears, the latest
    /// plan, its consent, and the planned zones the screening did not check. The course page, the booking API's
    /// readiness and the today board all read this one answer.
    struct Readiness {
        let screening: ScreeningRecord?
        let clearance: ScreeningClearance
        let plan: TreatmentPlanRecord?
        let consent: ConsentRecord?
        let unscreened: [FieldIssue]

        /// Why a session cannot start now, for a person; empty when it can.
        var problems: [String] {
            var problems: [String] = []
            if screening == nil { problems.append("There is no screening: take the intake first.") }
            else if !clearance.current { problems.append("The screening expired on \(clearance.expiresOn?.description ?? "?"): take a new intake.") }
            else if clearance.awaitsReview && clearance.blocking == [ScreeningClearance.reviewPending] {
                problems.append("The patient answered the intake at home: a practitioner reviews the answers with them on the screening page first.")
            } else if !clearance.cleared { problems.append("The screening does not clear treatment (\(clearance.blocking.joined(separator: ", "))); a practitioner may record an override.") }
            if let plan {
                if consent == nil { problems.append("Plan version \(plan.version) has no signed consent.") }
                for issue in unscreened { problems.append("Plan version \(plan.version): \(issue.problem).") }
            } else {
                problems.append("There is no plan.")
            }
            return problems
        }
    }

    func readiness() async throws -> Readiness {
        let screening = ScreeningService(req: req, patient: patient)
        let latestScreening = try await screening.latestScreening()
        let (clearance, _) = try await screening.clearance(of: latestScreening)
        let plan = try await latestPlan()
        let consent = if let plan { try await self.consent(for: plan) } else { ConsentRecord?.none }
        let unscreened = if let plan { try await self.unscreened(try plan.plan.zones.map(\.zone), plan: plan, path: { "zones[\($0)]" }) } else { [FieldIssue]() }
        return Readiness(screening: latestScreening, clearance: clearance, plan: plan, consent: consent, unscreened: unscreened)
    }

    /// Why a session cannot start now, or nil: a plan, a valid consent for that plan, and a current, clear screening.
    func startProblems() async throws -> [String] {
        try await readiness().problems
    }

    func startSession() async throws -> TreatmentSession {
        guard staff.role == .practitioner || staff.role == .admin else { throw Abort(.forbidden, reason: "Only a practitioner charts a session.") }
        let problems = try await startProblems()
        if !problems.isEmpty { throw DomainError.conflict("The session cannot start: " + problems.joined(separator: " ")) }
        guard let plan = try await latestPlan(), let consent = try await consent(for: plan),
              let screening = try await ScreeningService(req: req, patient: patient).latestScreening() else {
            throw DomainError.conflict("The session cannot start: the plan, consent or screening changed a moment ago; reload.")
        }
        let session = TreatmentSession()
        session.chartID = UUID()
        session.version = 1
        session.$patient.id = patientID
        session.$plan.id = try plan.requireID()
        session.$consent.id = try consent.requireID()
        session.$screening.id = try screening.requireID()
        session.practitionerID = staff.userID
        session.status = "draft"
        session.identityConfirmed = false
        session.skinCleansed = false
        session.notes = ""
        session.zones = try plan.plan.zones.map {
            ChartedZone(zone: $0.zone, depthMm: $0.depthMm, passes: $0.passes, pattern: $0.pattern, secondsInZone: $0.secondsInZone)
        }
        session.createdAt = now
        session.updatedAt = now
        try await session.create(on: db)
        return session
    }

    func latestVersion(of chartID: UUID) async throws -> TreatmentSession {
        guard let session = try await TreatmentSession.query(on: db).filter(\.$chartID == chartID).filter(\.$patient.$id == patientID)
            .sort(\.$version, .descending).first() else { throw DomainError.notFound("No such session.") }
        return session
    }

    func history(of chartID: UUID) async throws -> [TreatmentSession] {
        try await TreatmentSession.query(on: db).filter(\.$chartID == chartID).filter(\.$patient.$id == patientID).sort(\.$version).all()
    }

    func sessions() async throws -> [TreatmentSession] {
        let all = try await TreatmentSession.query(on: db).filter(\.$patient.$id == patientID).sort(\.$createdAt).all()
        var latest: [UUID: TreatmentSession] = [:]
        for session in all where (latest[session.chartID]?.version ?? 0) < session.version { latest[session.chartID] = session }
        return latest.values.sorted { $0.createdAt < $1.createdAt }
    }

    /// What a save of the chart asks to change.
    struct ChartChanges: Sendable {
        var identityConfirmed: Bool
        var skinCleansed: Bool
        var numbingOverrideReason: String?
        var deviceID: UUID?
        var lotID: UUID?
        var zones: [ChartedZone]
        var painScore: Int?
        var erythemaGrade: Int?
        var pinpointBleeding: Bool?
        var notes: String
    }

    /// Checks a chart's changes against every rule; returns the zones with their channel density.
    private func checked(_ changes: ChartChanges, on session: TreatmentSession) async throws -> [ChartedZone] {
        var issues: [FieldIssue] = []
        let plan = try await TreatmentPlanRecord.require(session.$plan.id, on: db)
        var device: ClinicalProtocol.DeviceProfile?
        if let deviceID = changes.deviceID {
            let pen = try await Inventory(db: db, clinicID: staff.clinicID).device(deviceID)
            if !pen.active && deviceID != session.$device.id {
                issues.append(FieldIssue(path: "device", problem: "pen \(pen.serial) is out of service"))
            }
            device = p.device(pen.profile)
        } else if !changes.zones.isEmpty {
            issues.append(FieldIssue(path: "device", problem: "choose the pen"))
        }
        issues += [TextLimits.issue(changes.notes, "notes", max: TextLimits.notes),
                   TextLimits.issue(changes.numbingOverrideReason, "numbingOverrideReason", max: TextLimits.reason)].compactMap { $0 }
        for (i, zone) in changes.zones.enumerated() {
            if zone.pattern.trimmingCharacters(in: .whitespaces).isEmpty { issues.append(FieldIssue(path: "zones[\(i)].pattern", problem: "is required")) }
            if let issue = TextLimits.issue(zone.pattern, "zones[\(i)].pattern", max: TextLimits.short) { issues.append(issue) }
        }
        for (field, scaleID, value) in [("painScore", p.followUp.painScale, changes.painScore), ("erythemaGrade", p.followUp.rednessScale, changes.erythemaGrade)] {
            if let value, let scale = p.outcomeScale(scaleID), !(scale.min...scale.max).contains(value) {
                issues.append(FieldIssue(path: field, problem: "must be \(scale.min) to \(scale.max)"))
            }
        }
        issues += try await unscreened(changes.zones.map(\.zone), screening: session.$screening.id, plan: plan) { "zones[\($0)].zone" }
        var zones = changes.zones
        if let device, !zones.isEmpty {
            let practitioner = try await StaffUser.find(session.practitionerID, on: db)
            do {
                zones = try ChartRules.checked(zones, plan: try plan.plan, device: device, practitionerMaxDepthMm: practitioner?.maxDepthMm, protocol: p)
            } catch let invalid as InvalidInput {
                issues += invalid.issues
            }
            if let problem = ChartRules.numbingProblem(appliedAt: session.anaestheticAppliedAt, now: now,
                                                       minimumMinutes: p.anaesthetic.minimumMinutes, overrideReason: changes.numbingOverrideReason) {
                issues.append(FieldIssue(path: "numbing", problem: problem))
            }
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return zones
    }

    /// Saves a draft from the version it was read at; a stale save is refused with 409 and writes nothing.
    /// Choosing the cartridge lot takes one cartridge from stock, in the same transaction.
    func saveDraft(_ chartID: UUID, expectedVersion: Int, changes: ChartChanges) async throws -> TreatmentSession {
        let session = try await latestVersion(of: chartID)
        guard !session.isSigned else { throw DomainError.conflict("This chart is signed: amend it instead.") }
        guard session.version == expectedVersion else { throw DomainError.conflict("Someone saved this chart since you opened it.") }
        let zones = try await checked(changes, on: session)
        let today = try await req.today(in: req.clinic())
        let clinicID = staff.clinicID
        let sessionID = try session.requireID()
        try await Writes.transaction(db) { db in
            if let lotID = changes.lotID, lotID != session.$lot.id {
                guard session.$lot.id == nil else { throw InvalidInput(path: "lot", problem: "the cartridge lot is already charted") }
                _ = try await Inventory(db: db, clinicID: clinicID).takeCartridge(from: lotID, today: today)
            }
            let encoded = String(decoding: try JSONEncoder().encode(zones), as: UTF8.self)
            try await ConditionalUpdate.versioned(TreatmentSession.self, id: sessionID, version: \.$version, expected: expectedVersion, on: db)
                .where(\.$status, .equal, "draft")
                .set(\.$identityConfirmed, to: changes.identityConfirmed)
                .set(\.$skinCleansed, to: changes.skinCleansed)
                .set(\.$numbingOverrideReason, to: changes.numbingOverrideReason)
                .set(\.$device.$id, to: changes.deviceID)
                .set(\.$lot.$id, to: changes.lotID ?? session.$lot.id)
                .set(\.$zonesJSON, to: encoded)
                .set(\.$painScore, to: changes.painScore)
                .set(\.$erythemaGrade, to: changes.erythemaGrade)
                .set(\.$pinpointBleeding, to: changes.pinpointBleeding)
                .set(\.$notes, to: changes.notes)
                .set(\.$updatedAt, to: self.now)
                .run(orThrow: Self.savedSince)
        }
        return try await latestVersion(of: chartID)
    }

    /// Stamps the time the anaesthetic went on: the numbing timer starts now. One conditional update: from the version
    /// read, on a draft, or 409.
    func recordNumbing(_ chartID: UUID, expectedVersion: Int) async throws -> TreatmentSession {
        let session = try await latestVersion(of: chartID)
        try await ConditionalUpdate.versioned(TreatmentSession.self, id: try session.requireID(), version: \.$version, expected: expectedVersion, on: db)
            .where(\.$status, .equal, "draft")
            .set(\.$anaestheticAppliedAt, to: now)
            .set(\.$updatedAt, to: now)
            .run(orThrow: Self.savedSince)
        return try await latestVersion(of: chartID)
    }

    static let savedSince = DomainError.conflict("Someone saved this chart since you opened it.")

    /// Signs the chart: every checklist item done, and only by the practitioner who charted it.
    func signChart(_ chartID: UUID, expectedVersion: Int) async throws -> TreatmentSession {
        let session = try await latestVersion(of: chartID)
        guard !session.isSigned else { throw DomainError.conflict("This chart is already signed.") }
        guard session.version == expectedVersion else { throw DomainError.conflict("Someone saved this chart since you opened it.") }
        guard session.practitionerID == staff.userID else { throw Abort(.forbidden, reason: "Only the practitioner who charted the session signs it.") }
        var issues: [FieldIssue] = []
        if !session.identityConfirmed { issues.append(FieldIssue(path: "identityConfirmed", problem: "confirm the patient's identity")) }
        if !session.skinCleansed { issues.append(FieldIssue(path: "skinCleansed", problem: "confirm the skin was cleansed")) }
        if session.$device.id == nil { issues.append(FieldIssue(path: "device", problem: "choose the pen")) }
        if session.$lot.id == nil { issues.append(FieldIssue(path: "lot", problem: "choose the cartridge lot")) }
        if session.zones.isEmpty { issues.append(FieldIssue(path: "zones", problem: "chart at least one zone")) }
        if session.painScore == nil { issues.append(FieldIssue(path: "painScore", problem: "record the pain score (0–10)")) }
        if session.erythemaGrade == nil { issues.append(FieldIssue(path: "erythemaGrade", problem: "record the immediate erythema (0–3)")) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        // Signing and the aftercare it issues are one unit of work: a chart is never signed without its aftercare.
        let sessionID = try session.requireID()
        return try await Writes.transaction(db) { db in
            try await ConditionalUpdate.versioned(TreatmentSession.self, id: sessionID, version: \.$version, expected: expectedVersion, on: db)
                .where(\.$status, .equal, "draft")
                .set(\.$status, to: "signed")
                .set(\.$signedAt, to: self.now)
                .set(\.$signedBy, to: self.staff.userID)
                .set(\.$updatedAt, to: self.now)
                .run(orThrow: Self.savedSince)
            let signed = try await latestVersion(of: chartID)
            try await ReportFacts.record(signed, on: db)
            // A session included in the patient's membership this month, else one of a package they bought, is used up
            // by this chart, in the same unit of work.
            let day = req.today(in: try await req.clinic())
            if try await Memberships(db: db, clinicID: staff.clinicID, now: now).use(chart: signed, day: day) == nil {
                try await Packages(db: db, clinicID: staff.clinicID, now: now).redeem(chart: signed, day: day)
            }
            let followUp = FollowUpService(req: req)
            try await followUp.issueAftercare(for: signed, by: staff.userID)
            // A patient who can be reached gets their aftercare link at once (by e-mail or text), in the same unit of work.
            if try await MessageRoute.to(patient: patientID, email: patient.email, phone: patient.phoneE164, on: db) != nil {
                let (link, token) = try await followUp.createLink(chartID: chartID, patientID: patientID, by: staff.userID)
                try await followUp.mailLink(token, link: link, to: patient)
            }
            return signed
        }
    }

    /// Amends a signed chart: a new version row with the reason; the signed version stays as it was.
    /// Two amendments from the same version: the database lets exactly one in (unique chart + version).
    func amend(_ chartID: UUID, expectedVersion: Int, reason: String, changes: ChartChanges) async throws -> TreatmentSession {
        let current = try await latestVersion(of: chartID)
        guard current.isSigned else { throw DomainError.conflict("This chart is not signed yet: save the draft instead.") }
        guard current.version == expectedVersion else { throw DomainError.conflict("Someone amended this chart since you opened it.") }
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count < 10 { throw InvalidInput(path: "amendmentReason", problem: "say why the signed chart is amended (at least 10 characters)") }
        if let issue = TextLimits.issue(trimmed, "amendmentReason", max: TextLimits.reason) { throw InvalidInput([issue]) }
        if changes.lotID != current.$lot.id || changes.deviceID != current.$device.id {
            throw InvalidInput(path: "lot", problem: "the pen and cartridge lot of a signed chart cannot be changed")
        }
        let zones = try await checked(ChartChanges(identityConfirmed: current.identityConfirmed, skinCleansed: current.skinCleansed,
                                                   numbingOverrideReason: current.numbingOverrideReason ?? "charted before this amendment",
                                                   deviceID: current.$device.id, lotID: current.$lot.id, zones: changes.zones,
                                                   painScore: changes.painScore, erythemaGrade: changes.erythemaGrade,
                                                   pinpointBleeding: changes.pinpointBleeding, notes: changes.notes), on: current)
        let next = current.nextVersion()
        next.zones = zones
        next.painScore = changes.painScore
        next.erythemaGrade = changes.erythemaGrade
        next.pinpointBleeding = changes.pinpointBleeding
        next.notes = changes.notes
        next.amendmentReason = trimmed
        next.updatedAt = now
        next.signedAt = now
        next.signedBy = staff.userID
        // The new version and the aftercare it re-issues are one unit of work.
        return try await Writes.transaction(db) { db in
            do {
                try await next.create(on: db)
            } catch let error as any DatabaseError where error.isConstraintFailure {
                throw DomainError.conflict("Someone amended this chart since you opened it.")
            }
            try await FollowUpService(req: req).issueAftercare(for: next, by: staff.userID)
            try await ReportFacts.record(next, on: db)
            return next
        }
    }
}
