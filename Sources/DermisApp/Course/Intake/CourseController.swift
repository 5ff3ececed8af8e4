import DermisCore
import Fluent
import Vapor

/// A patient's treatment course, step by step: Intake → Screening → Plan → Consent → Session.
/// This part holds the intake, the stored screening and its documented overrides.
struct CourseController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let anyStaff = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Patient")
        let patient = routes.grouped("patients", ":patientID")
        patient.get("course", use: course).access(anyStaff)
        patient.get("intake", "new", use: intakeForm).access(anyStaff)
        patient.post("intake", use: saveIntake).access(anyStaff)
        // Front desk collects an intake (a blank form) and sees whether the patient is ready, never the answers or reasons.
        patient.get("screenings", ":screeningID", use: showScreening).access(clinical)
        patient.post("screenings", ":screeningID", "overrides", use: overrideRule).access(clinical)
        patient.post("screenings", ":screeningID", "review", use: reviewAnswers).access(clinical)
        let api = routes.grouped("api", "v1", "patients", ":patientID")
        api.post("intakes", use: apiSaveIntake).access(anyStaff)
        api.get("screenings", "latest", use: apiLatestScreening).access(clinical)
        api.get("readiness", use: apiReadiness).access(anyStaff)
    }

    // MARK: The course page

    struct Step: Encodable {
        let name: String
        let state: String
        let detail: String
        let link: String?
    }

    struct CoursePage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let steps: [Step]
        let canStart: Bool
        let charts: [OutcomeChartView]
        let sessionLinks: [Option]
        let openEvents: [Option]
        /// The patient's questions from their own pages: open ones not `selected`.
        let questions: [Option]
        let bookings: [Option]
        let seriesRule: String?
        let locations: [Option]
        let canBookSeries: Bool
        let today: String
        /// The packages bought: sessions left and the last day.
        let packages: [BillingController.PackageLine]
    }

    func course(req: Request) async throws -> View {
        let patient = try await req.audited(.read, objectType: "Patient") { try await req.patient() }
        let isClinical = AccessRule.clinical.contains(try req.staff().role)
        let service = ScreeningService(req: req, patient: patient)
        let id = try patient.requireID()
        let intake = try await service.latestIntake()
        let screening = try await service.latestScreening()
        let (clearance, _) = try await service.clearance(of: screening)
        var steps = [Step(name: "Intake", state: intake == nil ? "to do" : "done",
                          detail: intake.map { "version \($0.version), \(AuditLog.isoDay($0.createdAt))"
                              + ($0.source == RecordSource.patientPortal ? ", answered by the patient at home" : "") } ?? "No intake yet.",
                          link: "/patients/\(id)/intake/new")]
        if let screening {
            let outcome = ScreeningOutcome(rawValue: screening.outcome)?.words ?? screening.outcome
            let state = !clearance.current ? "expired" : (clearance.cleared ? "done" : "blocked")
            var detail = "\(outcome) on \(screening.screenedOn)"
            if let until = screening.until { detail += ", until \(until)" }
            if !clearance.current, let expires = clearance.expiresOn { detail += "; expired \(expires): take a new intake" }
            steps.append(Step(name: "Screening", state: state, detail: detail, link: "/patients/\(id)/screenings/\(try screening.requireID())"))
        } else {
            steps.append(Step(name: "Screening", state: "to do", detail: "Runs when the intake is saved.", link: nil))
        }
        let treatment = TreatmentService(req: req, patient: patient, staff: try req.staff())
        let plan = try await treatment.latestPlan()
        steps.append(Step(name: "Plan", state: plan == nil ? "to do" : "done",
                          detail: plan.map { "version \($0.version), \(AuditLog.isoDay($0.createdAt))" } ?? "Plan zones and depths on the face map.",
                          link: "/patients/\(id)/plans/new"))
        if let plan {
            if let consent = try await treatment.consent(for: plan) {
                steps.append(Step(name: "Consent", state: "done", detail: "signed by \(consent.typedName) at \(AuditLog.isoMilliseconds(consent.signedAt))"
                                  + (consent.source == RecordSource.patientPortal ? ", at home on their own pages" : ""),
                                  link: "/patients/\(id)/consents/\(try consent.requireID())"))
            } else {
                steps.append(Step(name: "Consent", state: "to do", detail: "Plan version \(plan.version) is not signed yet.",
                                  link: "/patients/\(id)/plans/\(try plan.requireID())/consent"))
            }
        } else {
            steps.append(Step(name: "Consent", state: "not yet", detail: "Signed on the tablet once the plan is saved.", link: nil))
        }
        let problems = try await treatment.startProblems()
        let sessions = try await treatment.sessions()
        let sessionDetail = sessions.isEmpty ? (problems.isEmpty ? "Ready to start." : problems.joined(separator: " "))
            : "\(sessions.count) session(s); the latest is \(sessions.last!.status)."
        steps.append(Step(name: "Session", state: sessions.contains { $0.isSigned } ? "done" : (problems.isEmpty ? "to do" : "not yet"),
                          detail: sessionDetail, link: sessions.last.map { "/patients/\(id)/sessions/\($0.chartID)" }))
        let signed = sessions.filter(\.isSigned)
        // Outcomes and adverse events are clinical content: not even read for front desk.
        let scores = isClinical ? try await OutcomeScore.query(on: req.db).filter(\.$patient.$id == id).all() : []
        let eventTypes = Dictionary(uniqueKeysWithValues: req.dermis.clinicalProtocol.followUp.eventTypes.map { ($0.id, $0.label) })
        let openEvents = !isClinical ? [] : try await AdverseEvent.query(on: req.db).filter(\.$patient.$id == id).filter(\.$resolvedOn == nil)
            .sort(\.$openedAt).all()
            .map { Option(id: $0.id!.uuidString, name: "\(eventTypes[$0.type] ?? $0.type), \($0.severity), since \($0.onset)", selected: false) }
        let questions = !isClinical ? [] : try await PortalQuestion.query(on: req.db).filter(\.$patient.$id == id).sort(\.$askedAt, .descending)
            .all().map { q in Option(id: q.id!.uuidString, name: "\(AuditLog.isoDay(q.askedAt)): \(q.text)", selected: q.answeredAt != nil) }
        let scheduling = SchedulingService(req: req, clinicID: try req.staff().clinicID)
        let locations = try await scheduling.locations()
        let zoneOfClinic = try await req.clinic()?.zone ?? .current
        let bookings = try await Appointment.query(on: req.db).filter(\.$patient.$id == id).sort(\.$startsAt).all().map { a in
            Option(id: a.id!.uuidString, name: "\(LocalTime.words(a.startsAt, in: zoneOfClinic)) · \(a.status)\(a.seriesID != nil ? " · series" : "")\(a.zones.isEmpty ? "" : " · " + a.zoneList.joined(separator: ", "))", selected: false)
        }
        var seriesRule: String?
        if let plan = try plan?.plan {
            let rule = try await scheduling.seriesRule(patientID: id, zones: plan.zones.map(\.zone), ignoring: nil)
            seriesRule = isClinical
                ? "Series: \(plan.series.sessions) sessions at least \(plan.series.minIntervalDays) days apart (\(plan.series.sources.joined(separator: "; ")))."
                    + (rule?.earliest.map { " Next treatment of these zones not before \($0): \(rule!.reason)." } ?? "")
                : rule?.earliest.map { "Next treatment not before \($0)." }
        }
        if !isClinical { steps = steps.map { Self.readinessOnly($0, ready: problems.isEmpty) } }
        return try await req.view.render("course", CoursePage(page: try await PageHeader(req, title: "Treatment course"),
                                                              patientID: id.uuidString, patientName: patient.fullName,
                                                              steps: steps, canStart: isClinical && problems.isEmpty,
                                                              charts: isClinical ? OutcomeChartView.charts(signed, scores: scores, protocol: req.dermis.clinicalProtocol) : [],
                                                              sessionLinks: isClinical ? signed.map { Option(id: $0.chartID.uuidString, name: AuditLog.isoDay($0.createdAt), selected: false) } : [],
                                                              openEvents: openEvents, questions: questions, bookings: bookings, seriesRule: seriesRule,
                                                              locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: false) },
                                                              canBookSeries: plan != nil && !locations.isEmpty,
                                                              today: req.today(in: req.clinic()).description,
                                                              packages: BillingController.packageLines(
                                                                try await Packages(db: req.db, clinicID: scheduling.clinicID, now: req.dermis.clock.now()).standings(patientID: id),
                                                                today: req.today(in: req.clinic()))))
    }

    /// What front desk sees of a step: whether it is done and the patient ready, not the clinical detail behind it
    /// (screening reasons, the plan, who signed, why a session cannot start). Links only to what front desk collects.
    static func readinessOnly(_ step: Step, ready: Bool) -> Step {
        switch step.name {
        case "Intake":
            return Step(name: step.name, state: step.state, detail: step.state == "done" ? "Taken." : "No intake yet.", link: step.link)
        case "Screening":
            let detail = ["done": "Cleared for treatment.", "blocked": "Not cleared: a practitioner reviews the screening.",
                          "expired": "Expired: take a new intake."][step.state] ?? "Runs when the intake is saved."
            return Step(name: step.name, state: step.state, detail: detail, link: nil)
        case "Plan":
            return Step(name: step.name, state: step.state, detail: step.state == "done" ? "Planned." : "A practitioner plans the treatment.", link: nil)
        case "Consent":
            let detail = ["done": "Signed.", "to do": "Not signed yet."][step.state] ?? "Signed once the plan is saved."
            return Step(name: step.name, state: step.state, detail: detail, link: step.state == "to do" ? step.link : nil)
        default:
            let detail = step.state == "done" ? "Treated." : (ready ? "Ready for the practitioner." : "Not ready yet.")
            return Step(name: step.name, state: step.state, detail: detail, link: nil)
        }
    }

    // MARK: Intake

    struct ConditionRow: Encodable {
        let code: String
        let name: String
        let selected: Bool
        let zones: [Option]
    }

    struct MedicationRow: Encodable {
        let code: String
        let name: String
        let status: String
        let lastDose: String
    }

    struct ProcedureRow: Encodable {
        let row: Int
        let kinds: [Option]
        let date: String
        let zones: [Option]
    }

    /// The intake's fields filled from a form's answers: the same fields, names and parser for staff and for the patient
    /// at home; only the words around them differ (`words` names a vocabulary code).
    struct IntakeFields: Encodable {
        let pregnant: String
        let nursing: String
        let fitzpatrick: [Option]
        let zones: [Option]
        let conditions: [ConditionRow]
        let medications: [MedicationRow]
        let allergies: [Option]
        let procedures: [ProcedureRow]

        init(_ form: IntakeForm, protocol p: ClinicalProtocol, words: (String) -> String = CourseController.words) {
            let zoneChecks = { (chosen: [String]) in p.zones.map { Option(id: $0.id, name: $0.displayName, selected: chosen.contains($0.id)) } }
            pregnant = form.one("pregnant") ?? ""
            nursing = form.one("nursing") ?? ""
            fitzpatrick = (1...6).map { Option(id: String($0), name: ["I", "II", "III", "IV", "V", "VI"][$0 - 1], selected: form.one("fitzpatrickType") == String($0)) }
            zones = zoneChecks(form.all("zone"))
            conditions = Vocabulary.conditions.map { code in
                ConditionRow(code: code, name: words(code), selected: form.all("condition").contains(code),
                             zones: zoneChecks(form.all("conditionZones.\(code)")))
            }
            medications = Vocabulary.medications.map { code in
                MedicationRow(code: code, name: words(code), status: form.one("medication.\(code)") ?? "none",
                              lastDose: form.one("lastDose.\(code)") ?? "")
            }
            allergies = Vocabulary.allergies.map { Option(id: $0, name: words($0), selected: form.all("allergy").contains($0)) }
            procedures = (0..<IntakeForm.procedureRows).map { row in
                ProcedureRow(row: row, kinds: Vocabulary.procedures.map { Option(id: $0, name: words($0), selected: form.one("procedureKind.\(row)") == $0) },
                             date: form.one("procedureDate.\(row)") ?? "", zones: zoneChecks(form.all("procedureZones.\(row)")))
            }
        }
    }

    struct IntakePage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let dateOfBirth: String
        let fields: IntakeFields
        /// The answers the form starts from were the patient's own, given at home (to be checked with them).
        let fromPatient: String?
        let errors: [ErrorLine]
    }

    func intakeForm(req: Request) async throws -> View {
        let patient = try await req.audited(.read, objectType: "Patient") { try await req.patient() }
        // A practitioner starts from the last answers; front desk, who only collects them, from a blank form.
        guard AccessRule.clinical.contains(try req.staff().role) else { return try await render(req, patient: patient, form: IntakeForm(pairs: []), errors: []) }
        let latest = try await ScreeningService(req: req, patient: patient).latestIntake()
        var form = IntakeForm.from(try latest?.intake)
        if form.one("fitzpatrickType") == nil, let type = patient.fitzpatrickType { form.pairs.append(("fitzpatrickType", String(type))) }
        let fromPatient = latest.flatMap { $0.source == RecordSource.patientPortal ? "version \($0.version), \(AuditLog.isoDay($0.createdAt))" : nil }
        return try await render(req, patient: patient, form: form, errors: [], fromPatient: fromPatient)
    }

    func saveIntake(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let form = try IntakeForm(req: req)
        do {
            let (_, screening) = try await req.audited(.create, objectType: "Intake", patientID: patient.id) {
                let intake = try form.intake(dateOfBirth: patient.dateOfBirth)
                return try await ScreeningService(req: req, patient: patient).record(intake, by: staff)
            }
            guard AccessRule.clinical.contains(staff.role) else {
                return req.redirect(to: "/patients/\(try patient.requireID())/course", redirectType: .normal)
            }
            return req.redirect(to: "/patients/\(try patient.requireID())/screenings/\(try screening.requireID())", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await render(req, patient: patient, form: form, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    private func render(_ req: Request, patient: Patient, form: IntakeForm, errors: [ErrorLine], fromPatient: String? = nil) async throws -> View {
        let page = IntakePage(
            page: try await PageHeader(req, title: "Intake"), patientID: try patient.requireID().uuidString,
            patientName: patient.fullName, dateOfBirth: patient.dateOfBirth, fields: IntakeFields(form, protocol: req.dermis.clinicalProtocol),
            fromPatient: fromPatient, errors: errors)
        return try await req.view.render("intake", page)
    }

    /// `botulinum-toxin` → "botulinum toxin".
    static func words(_ code: String) -> String { code.replacingOccurrences(of: "-", with: " ") }

    // MARK: Screening

    struct FindingView: Encodable {
        let rule: String
        let kind: String
        let message: String
        let source: String
        let until: String?
        let rationale: String?
        let conservativeDefault: Bool
        let overridden: OverrideView?
        let mayOverride: Bool
    }

    struct OverrideView: Encodable {
        let reason: String
        let by: String
        let at: String
    }

    struct ScreeningPage: Encodable {
        let page: PageHeader
        let patientID: String
        let screeningID: String
        let patientName: String
        let outcome: String
        let outcomeCode: String
        let until: String?
        let screenedOn: String
        let protocolVersion: String
        let reasons: [FindingView]
        let precautions: [FindingView]
        let current: Bool
        let cleared: Bool
        let expiresOn: String
        /// The intake it read was the patient's own, given at home: "version 3, 2026-11-30".
        let fromPatient: String?
        /// Those answers await a practitioner's review before the screening clears anything; or who reviewed them.
        let awaitsReview: Bool
        let reviewed: String?
        let errors: [ErrorLine]
    }

    func showScreening(req: Request) async throws -> View {
        try await renderScreening(req, errors: [])
    }

    private func renderScreening(_ req: Request, errors: [ErrorLine]) async throws -> View {
        let staff = try req.staff()
        let patient = try await req.patient()
        let service = ScreeningService(req: req, patient: patient)
        let screeningID = try req.uuidParameter("screeningID", notFound: "No such screening.")
        let record = try await req.audited(.read, objectType: "Screening", objectID: screeningID.uuidString, patientID: patient.id) {
            try await service.screening(screeningID)
        }
        let result = try record.screening
        let (clearance, overrides) = try await service.clearance(of: record)
        let intake = try await IntakeRecord.find(record.$intake.id, on: req.db)
        let fromPatient = intake.flatMap { $0.source == RecordSource.patientPortal ? "version \($0.version), \(AuditLog.isoDay($0.createdAt))" : nil }
        let people = overrides.map(\.by) + [record.reviewedBy].compactMap { $0 }
        let names = Dictionary(try await StaffUser.query(on: req.db).filter(\.$id ~~ people).all().map { ($0.id!, $0.name) },
                               uniquingKeysWith: { a, _ in a })
        let user = try await StaffUser.find(staff.userID, on: req.db)
        let clinical = staff.role == .admin || staff.role == .practitioner
        let physician = user?.credential?.lowercased() == "physician"
        func view(_ finding: RuleFinding) -> FindingView {
            let done = overrides.first { $0.rule == finding.rule }
            return FindingView(rule: finding.rule, kind: finding.kind ?? "", message: finding.message, source: finding.source,
                               until: finding.until?.description, rationale: finding.rationale,
                               conservativeDefault: finding.conservativeDefault ?? false,
                               overridden: done.map { OverrideView(reason: $0.reason, by: names[$0.by] ?? "?", at: AuditLog.isoMilliseconds($0.at)) },
                               mayOverride: done == nil && clinical && (finding.kind != "not-eligible" || physician))
        }
        return try await req.view.render("screening", ScreeningPage(
            page: try await PageHeader(req, title: "Screening"), patientID: try patient.requireID().uuidString,
            screeningID: screeningID.uuidString, patientName: patient.fullName,
            outcome: result.outcome.words, outcomeCode: result.outcome.rawValue, until: result.until?.description,
            screenedOn: record.screenedOn, protocolVersion: record.protocolVersion,
            reasons: result.reasons.map(view), precautions: result.precautions.map(view),
            current: clearance.current, cleared: clearance.cleared, expiresOn: clearance.expiresOn?.description ?? "", fromPatient: fromPatient,
            awaitsReview: record.awaitsReview,
            reviewed: record.reviewedBy.map { by in "by \(names[by] ?? "?") at \(AuditLog.isoMilliseconds(record.reviewedAt ?? record.createdAt))" },
            errors: errors))
    }

    /// The practitioner has gone through the patient's answers from home with them: the screening now counts.
    func reviewAnswers(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let service = ScreeningService(req: req, patient: patient)
        let screeningID = try req.uuidParameter("screeningID", notFound: "No such screening.")
        try await req.audited(.update, objectType: "Screening", objectID: screeningID.uuidString, patientID: patient.id) {
            try await service.review(try await service.screening(screeningID), by: staff)
        }
        return req.redirect(to: "/patients/\(try patient.requireID())/screenings/\(screeningID)", redirectType: .normal)
    }

    struct OverrideForm: Content {
        var rule: String?
        var reason: String?
    }

    func overrideRule(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let service = ScreeningService(req: req, patient: patient)
        let screeningID = try req.uuidParameter("screeningID", notFound: "No such screening.")
        let form = try req.content.decode(OverrideForm.self)
        do {
            _ = try await req.audited(.update, objectType: "Screening", objectID: screeningID.uuidString, patientID: patient.id) {
                try await service.override(try await service.screening(screeningID), rule: form.rule ?? "", reason: form.reason ?? "", by: staff)
            }
            return req.redirect(to: "/patients/\(try patient.requireID())/screenings/\(screeningID)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderScreening(req, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    // MARK: API

    /// `screening` (its reasons and precautions) only for clinical staff; front desk gets whether the patient is cleared.
    struct SavedIntake: Content {
        let intakeID: UUID
        let intakeVersion: Int
        let screeningID: UUID
        let outcome: String
        let screening: ScreeningResult?
    }

    func apiSaveIntake(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let (intake, screening) = try await req.audited(.create, objectType: "Intake", patientID: patient.id) {
            try await ScreeningService(req: req, patient: patient).record(try req.decodeJSON(Intake.self), by: staff)
        }
        let result = try screening.screening
        let saved = SavedIntake(intakeID: try intake.requireID(), intakeVersion: intake.version, screeningID: try screening.requireID(),
                                outcome: result.outcome.rawValue, screening: AccessRule.clinical.contains(staff.role) ? result : nil)
        return try await saved.encodeResponse(status: .created, for: req)
    }

    struct LatestScreening: Content {
        let screeningID: UUID
        let screening: ScreeningResult
        let current: Bool
        let cleared: Bool
        let blocking: [String]
    }

    /// Whether a patient is ready, for anyone who books: screened (and still current), cleared, a plan, consent signed.
    struct Readiness: Content {
        let screened: Bool
        let screeningCurrent: Bool
        let cleared: Bool
        let planned: Bool
        let consented: Bool
        let ready: Bool
    }

    func apiReadiness(req: Request) async throws -> Readiness {
        let patient = try await req.patient()
        return try await req.audited(.read, objectType: "Patient", patientID: patient.id) {
            let state = try await TreatmentService(req: req, patient: patient, staff: try req.staff()).readiness()
            let screened = state.screening != nil
            return Readiness(screened: screened, screeningCurrent: screened && state.clearance.current,
                             cleared: screened && state.clearance.cleared, planned: state.plan != nil, consented: state.consent != nil,
                             ready: state.problems.isEmpty)
        }
    }

    func apiLatestScreening(req: Request) async throws -> LatestScreening {
        let patient = try await req.patient()
        let service = ScreeningService(req: req, patient: patient)
        return try await req.audited(.read, objectType: "Screening", patientID: patient.id) {
            guard let record = try await service.latestScreening() else { throw Abort(.notFound, reason: "This patient has no screening yet.") }
            let (clearance, _) = try await service.clearance(of: record)
            return LatestScreening(screeningID: try record.requireID(), screening: try record.screening, current: clearance.current,
                                   cleared: clearance.cleared, blocking: clearance.blocking)
        }
    }
}
