import DermisCore
import Fluent
import Vapor

/// The patient's own pages (`/my`): what to expect, the intake and consent at home, their appointments (calendar file,
/// move or cancel outside the clinic's notice period, the next session of the series on times the interval allows),
/// their aftercare and check-ins, their series and the photos the practitioner shared. Every page reads only the signed-in
/// patient's records and is audited with the patient as the actor; every sentence comes from the patient text catalogue.
struct PortalController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let my = routes.grouped("my")
        my.get(use: home).access(.patient)
        my.get("expect", use: expect).access(.patient)
        my.get("intake", use: intakeForm).access(.patient)
        my.post("intake", use: saveIntake).access(.patient)
        my.get("consent", use: consentForm).access(.patient)
        my.post("consent", use: sign).access(.patient)
        my.post("questions", use: ask).access(.patient)
        my.get("book", use: bookForm).access(.patient)
        my.post("book", use: book).access(.patient)
        let appointment = my.grouped("appointments", ":appointmentID")
        appointment.get("calendar.ics", use: ics).access(.patient)
        appointment.get("move", use: moveForm).access(.patient)
        appointment.post("move", use: move).access(.patient)
        appointment.post("cancel", use: cancel).access(.patient)
        appointment.post("deposit", use: payDeposit).access(.patient)
        appointment.get("deposit", "paid", use: depositPaid).access(.patient)
        my.get("care", ":chartID", use: care).access(.patient)
        my.on(.POST, "care", ":chartID", "check-ins", body: .collect(maxSize: PhotoService.maxBody), use: checkIn).access(.patient)
        my.get("progress", use: progress).access(.patient)
        my.get("photos", ":photoID", use: photo).access(.patient)
        my.get("account", use: account).access(.patient)
    }

    /// The signed-in patient, their clinic and the catalogue.
    struct Context {
        let portal: PortalPrincipal
        let patient: Patient
        let clinic: Clinic
        let text: PatientText

        var patientID: UUID { portal.patientID }
        var zone: TimeZone { clinic.zone }

        func page(_ req: Request, _ titleKey: String) -> MyPage { MyPage(req, clinic: clinic, title: text(titleKey), signedIn: true) }
    }

    /// A form's problems in the patient's words where the catalogue has them (the services name them for staff), each
    /// still naming its field.
    static func patientWords(_ invalid: InvalidInput, _ c: Context) -> [ErrorLine] {
        invalid.issues.map { issue in
            let path = issue.path
            let code = path.split(separator: ".").dropFirst().first.map(String.init) ?? ""
            let name = c.text.strings["vocabulary.\(code)"] ?? CourseController.words(code)
            let words: String? = switch path {
            case "pregnant", "nursing": c.text("intake.error.yesNo")
            case "fitzpatrickType": c.text("intake.error.skinType")
            case "typedName": c.text("consent.error.typedName", ["name": c.patient.fullName])
            case "signature": c.text("consent.error.signature")
            case "location": c.text("book.error.location")
            case _ where path.hasPrefix("lastDose."): c.text("intake.error.lastDose", ["name": name])
            case _ where path.hasPrefix("medication."): c.text("intake.error.medication", ["name": name])
            case _ where path.hasPrefix("procedureDate."): c.text("intake.error.procedureDate")
            default: nil
            }
            return ErrorLine(field: path, message: words ?? issue.description)
        }
    }

    /// The clinic's number for "call the clinic", or words for it when the location has none.
    static func phone(_ location: Location?, _ c: Context) -> String {
        guard let phone = location?.phone, !phone.isEmpty else { return c.text("clinic.phoneFallback") }
        return phone
    }

    static func context(_ req: Request) async throws -> Context {
        let portal = try req.portalPatient()
        guard let patient = try await Patient.find(portal.patientID, on: req.db) else { throw Abort(.unauthorized) }
        return Context(portal: portal, patient: patient, clinic: try await Clinic.require(portal.clinicID, on: req.db), text: req.dermis.patientText)
    }

    // MARK: Home

    struct Step: Encodable {
        let id: String
        let text: String
        let done: Bool
        let link: String?
        let action: String?
    }

    struct AppointmentRow: Encodable {
        let id: String
        let when: String
        let service: String
        let location: String
        let address: String
        let phone: String
        let pending: Bool
        let mayChange: Bool
        let changeNote: String
    }

    struct HomePage: Encodable {
        let my: MyPage
        let greeting: String
        let steps: [Step]
        let appointments: [AppointmentRow]
        let canBook: Bool
        let bookNote: String?
        let aftercare: [Option]
        let questions: [Option]
        let notice: String?
        let errors: [ErrorLine]
        /// Packages with sessions left, unexpired: what is left and the last day.
        let packages: [String]
    }

    func home(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await renderHome(req, c, errors: [], status: .ok)
    }

    /// The home page, with a refusal named when an appointment could not be changed.
    private func renderHome(_ req: Request, _ c: Context, errors: [ErrorLine], status: HTTPResponseStatus) async throws -> Response {
        try await req.audited(.read, objectType: "Patient", patientID: c.patientID) {
            let t = c.text
            let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
            let state = try await treatment.readiness()
            var steps = [Step(id: "expect", text: t("home.step.expect"), done: false, link: "/my/expect", action: t("home.step.expect.action"))]
            let intakeDone = state.screening != nil && state.clearance.current
            steps.append(Step(id: "intake", text: intakeDone ? t("home.step.intake.done") : t("home.step.intake"), done: intakeDone,
                              link: "/my/intake", action: intakeDone ? t("home.step.intake.again") : t("home.step.intake.action")))
            if let plan = state.plan {
                steps.append(Step(id: "consent", text: state.consent == nil ? t("home.step.consent", ["version": "\(plan.version)"]) : t("home.step.consent.done"),
                                  done: state.consent != nil, link: state.consent == nil ? "/my/consent" : nil,
                                  action: state.consent == nil ? t("home.step.consent.action") : nil))
            } else {
                steps.append(Step(id: "consent", text: t("home.step.consent.noPlan"), done: false, link: nil, action: nil))
            }
            let next = try await bookable(req, c, plan: .some(state.plan))
            let (canBook, bookNote) = (next.note == nil, next.note)
            let now = req.dermis.clock.now()
            let links = try await PatientLink.query(on: req.db).filter(\.$patient.$id == c.patientID).sort(\.$createdAt, .descending).all()
                .filter { $0.isUsable(at: now) }
            let aftercare = links.map { link in
                Option(id: link.chartID.uuidString,
                       name: t("home.aftercare.item", ["until": LocalTime.words(link.expiresAt, in: c.zone)]), selected: false)
            }
            let questions = try await PortalQuestion.query(on: req.db).filter(\.$patient.$id == c.patientID).sort(\.$askedAt, .descending)
                .limit(10).all().map { q in
                    Option(id: q.id?.uuidString ?? "", name: "\(LocalTime.words(q.askedAt, in: c.zone)): \(q.text)", selected: q.answeredAt != nil)
                }
            let notice = (try? req.query.get(String.self, at: "done")).flatMap { ["cancelled", "moved", "booked", "asked", "signed"].contains($0) ? t("home.done.\($0)") : nil }
            return try await req.view.render("my-home", HomePage(
                my: c.page(req, "home.title"), greeting: t("home.greeting", ["name": c.patient.givenName]), steps: steps,
                appointments: try await appointments(req, c), canBook: canBook, bookNote: bookNote, aftercare: aftercare,
                questions: questions, notice: notice, errors: errors,
                packages: try await Packages(db: req.db, clinicID: c.clinic.requireID(), now: now).standings(patientID: c.patientID)
                    .filter { $0.left > 0 && !$0.expired(on: CalendarDate(now, in: c.zone)) }
                    .map { t("home.packages.item", ["name": $0.package.name, "left": "\($0.left)", "sessions": "\($0.package.sessions)",
                                                    "until": $0.package.expiresOn]) })).encodeResponse(status: status, for: req)
        }
    }

    /// Booked, or held and the hold not yet lapsed (a lapsed hold is only marked expired by the next booking write).
    static func live(_ query: QueryBuilder<Appointment>, at now: Date) -> QueryBuilder<Appointment> {
        query.group(.or) { either in
            either.filter(\.$status == AppointmentStatus.booked.rawValue)
            either.group(.and) { held in
                held.filter(\.$status == AppointmentStatus.pending.rawValue).filter(\.$holdExpiresAt, .greaterThan, Optional(now))
            }
        }
    }

    /// Upcoming appointments, soonest first, each saying whether the patient may still move or cancel it themselves.
    private func appointments(_ req: Request, _ c: Context) async throws -> [AppointmentRow] {
        let now = req.dermis.clock.now()
        let upcoming = try await Self.live(Appointment.query(on: req.db).filter(\.$patient.$id == c.patientID).filter(\.$clinic.$id == c.clinic.requireID())
            .filter(\.$startsAt > now), at: now).sort(\.$startsAt).all()
        guard !upcoming.isEmpty else { return [] }
        let locations = try await Location.query(on: req.db).filter(\.$id ~~ Set(upcoming.map(\.$location.id))).all()
        let services = try await Service.query(on: req.db).filter(\.$id ~~ Set(upcoming.map(\.$service.id))).all()
        let hours = noticeHours(c)
        return upcoming.map { a in
            let location = locations.first { $0.id == a.$location.id }
            let may = Self.mayChange(a, noticeHours: hours, now: now)
            let zone = location?.zone ?? c.zone
            return AppointmentRow(
                id: a.id!.uuidString, when: LocalTime.words(a.startsAt, in: zone),
                service: services.first { $0.id == a.$service.id }?.name ?? "", location: location?.name ?? "", address: location?.address ?? "",
                phone: location?.phone ?? "", pending: a.appointmentStatus == .pending, mayChange: may,
                changeNote: may ? c.text("appointments.changeUntil", ["when": LocalTime.words(a.startsAt.addingTimeInterval(-Double(hours) * 3600), in: zone)])
                    : c.text("appointments.tooLate", ["hours": "\(hours)", "phone": Self.phone(location, c)]))
        }
    }

    private func noticeHours(_ c: Context) -> Int { c.clinic.cancellationNoticeHours ?? Clinic.defaultNoticeHours }

    /// A booking the patient may still change: booked (or held), and at least the clinic's notice period away.
    static func mayChange(_ a: Appointment, noticeHours: Int, now: Date) -> Bool {
        [.booked, .pending].contains(a.appointmentStatus) && a.startsAt.timeIntervalSince(now) >= Double(noticeHours) * 3600
    }

    // MARK: What to expect

    /// A sentence of the guide with the source of its figures.
    struct GuideLine: Encodable {
        let text: String
        let source: String
    }

    struct ExpectPage: Encodable {
        let my: MyPage
        let intro: String
        let areas: String
        let total: String
        let steps: [GuideLine]
        let downtime: String
        let downtimeSource: String
        let before: [GuideLine]
        let after: [GuideLine]
        let notEligible: [GuideLine]
        let wait: [GuideLine]
        let tell: [GuideLine]
    }

    func expect(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Patient", patientID: c.patientID) {
            let p = req.dermis.clinicalProtocol
            let t = c.text
            let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
            // The planned zones and depths once there is a plan; before it, the areas the patient chose in the intake.
            let plan = try await treatment.latestPlan()
            let planned = try plan?.plan.zones ?? []
            let chosen = planned.isEmpty ? (try await ScreeningService(req: req, patient: c.patient).latestIntake()?.intake.treatmentZones ?? []) : planned.map(\.zone)
            let guide = PatientGuide(zones: chosen, plannedDepthsMm: planned.map(\.depthMm), protocol: p)
            // The plan's passes once planned; before, the protocol's default — each with where it comes from.
            let passes = planned.map(\.passes).max() ?? guide.passes
            let steps = guide.steps.map { step in
                GuideLine(text: t("expect.step.\(step.kind)", ["minutes": "\(step.minutes)", "passes": "\(passes)"]),
                          source: step.kind == "needling" && planned.isEmpty ? "\(step.source); \(guide.passesSource)" : step.source)
            }
            let downtime = guide.downtime.plannedDepthMm.map {
                t("expect.downtime.planned", ["depth": formatMillimetres($0), "min": "\(guide.downtime.minDays)", "max": "\(guide.downtime.maxDays)"])
            } ?? t("expect.downtime.typical", ["min": "\(guide.downtime.minDays)", "max": "\(guide.downtime.maxDays)"])
            func wait(_ f: PatientGuide.Finding) -> String {
                var parts: [String] = []
                if let months = f.waitMonths { parts.append(t(months == 1 ? "expect.month" : "expect.months", ["n": "\(months)"])) }
                if let days = f.waitDays { parts.append(t(days == 1 ? "expect.day" : "expect.days", ["n": "\(days)"])) }
                return parts.isEmpty ? t("expect.wait.open", ["what": f.words]) : t("expect.wait.for", ["what": f.words, "time": parts.joined(separator: " ")])
            }
            // Before: what the protocol defers for a set time after it (a recent filler, peel, medicine); the rest wait
            // until the practitioner says.
            let timed = guide.deferrals.filter { $0.waitMonths != nil || $0.waitDays != nil }
            let before = timed.map { GuideLine(text: wait($0), source: $0.source) }
            let page = ExpectPage(
                my: c.page(req, "expect.title"),
                intro: t("expect.intro"),
                areas: t(plan != nil ? "expect.areas.planned" : (chosen.isEmpty ? "expect.areas.default" : "expect.areas.chosen"),
                         ["areas": guide.areas.map(\.name).joined(separator: ", ")]),
                total: t("expect.total", ["minutes": "\(guide.totalMinutes)"]),
                steps: steps, downtime: downtime, downtimeSource: guide.downtime.sources.joined(separator: "; "),
                before: before,
                after: guide.aftercare.map { item in
                    let when = item.toHour.map { t("expect.after.window", ["from": "\(item.fromHour)", "to": "\($0)"]) }
                        ?? t("expect.after.from", ["from": "\(item.fromHour)"])
                    return GuideLine(text: "\(when): \(item.instruction)", source: item.source)
                },
                notEligible: guide.notEligible.map { GuideLine(text: $0.words, source: $0.source) },
                wait: guide.deferrals.filter { f in !timed.contains { $0.rule == f.rule } }.map { GuideLine(text: wait($0), source: $0.source) },
                tell: guide.precautions.map { GuideLine(text: $0.words, source: $0.source) })
            return try await req.view.render("my-expect", page).encodeResponse(for: req)
        }
    }

    // MARK: Intake at home

    struct IntakePage: Encodable {
        let my: MyPage
        let form: CourseController.IntakeFields
        let errors: [ErrorLine]
    }

    func intakeForm(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Intake", patientID: c.patientID) {
            // Their own last answers to start from (whoever typed them in); a first intake starts blank.
            var form = IntakeForm.from(try await ScreeningService(req: req, patient: c.patient).latestIntake()?.intake)
            if form.one("fitzpatrickType") == nil, let type = c.patient.fitzpatrickType { form.pairs.append(("fitzpatrickType", String(type))) }
            return try await renderIntake(req, c, form: form, errors: [], status: .ok)
        }
    }

    private func renderIntake(_ req: Request, _ c: Context, form: IntakeForm, errors: [ErrorLine], status: HTTPResponseStatus) async throws -> Response {
        let fields = CourseController.IntakeFields(form, protocol: req.dermis.clinicalProtocol, words: { code in c.text.strings["vocabulary.\(code)"] ?? CourseController.words(code) })
        return try await req.view.render("my-intake", IntakePage(my: c.page(req, "intake.title"), form: fields, errors: errors))
            .encodeResponse(status: status, for: req)
    }

    struct IntakeResultPage: Encodable {
        let my: MyPage
        let deferred: Bool
        let reasons: [String]
        let message: String
    }

    func saveIntake(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let form = try IntakeForm(req: req)
        do {
            let (_, screening) = try await req.audited(.create, objectType: "Intake", patientID: c.patientID) {
                let intake = try form.intake(dateOfBirth: c.patient.dateOfBirth)
                return try await ScreeningService(req: req, patient: c.patient)
                    .record(intake, by: try TreatmentService.forPatient(req: req, patient: c.patient).staff, source: RecordSource.patientPortal)
            }
            // What the public pre-screen shows: a deferral in plain words with its date. Anything else is the
            // practitioner's to review with the patient, never a verdict on this page.
            let result = try screening.screening
            let p = req.dermis.clinicalProtocol
            let deferred = result.outcome == .deferred
            let reasons = deferred ? result.reasons.map { finding in
                p.contraindications.first { $0.id == finding.rule }?.forPatients ?? finding.message
            } : []
            let message = deferred ? (result.until.map { c.text("intake.deferred.until", ["date": Self.dayWords($0)]) } ?? c.text("intake.deferred.open"))
                : c.text("intake.review")
            return try await req.view.render("my-intake-done", IntakeResultPage(
                my: c.page(req, "intake.done.title"), deferred: deferred, reasons: reasons, message: message))
                .encodeResponse(status: .created, for: req)
        } catch let invalid as InvalidInput {
            return try await renderIntake(req, c, form: form, errors: Self.patientWords(invalid, c), status: .unprocessableEntity)
        }
    }

    /// "Tuesday 1 June 2027".
    static func dayWords(_ day: CalendarDate) -> String {
        let style = Date.FormatStyle(date: .complete, time: .omitted, locale: Locale(identifier: "en_GB"), calendar: Calendar(identifier: .gregorian),
                                     timeZone: TimeZone(identifier: "UTC")!)
        return AftercareSchedule.bounds(of: day, in: TimeZone(identifier: "UTC")!).0.formatted(style)
    }

    // MARK: Consent at home

    struct ConsentPage: Encodable {
        let my: MyPage
        let planLine: String
        let planID: String
        let zones: [String]
        let template: ConsentController.TemplateText?
        let signedOn: String?
        let hasPlan: Bool
        let typedName: String
        let question: String
        let errors: [ErrorLine]
        let fullName: String
    }

    func consentForm(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "TreatmentPlan", patientID: c.patientID) {
            try await renderConsent(req, c, typedName: "", question: "", errors: [], status: .ok)
        }
    }

    private func renderConsent(_ req: Request, _ c: Context, typedName: String, question: String, errors: [ErrorLine],
                               status: HTTPResponseStatus) async throws -> Response {
        let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
        let p = req.dermis.clinicalProtocol
        let plan = try await treatment.latestPlan()
        let consent = if let plan { try await treatment.consent(for: plan) } else { ConsentRecord?.none }
        let zones = try plan?.plan.zones.map { z in
            c.text("consent.zone", ["area": p.zone(z.zone)?.displayName ?? z.zone, "depth": formatMillimetres(z.depthMm), "passes": "\(z.passes)"])
        } ?? []
        return try await req.view.render("my-consent", ConsentPage(
            my: c.page(req, "consent.title"), planLine: c.text("consent.plan", ["version": "\(plan?.version ?? 0)"]),
            planID: plan?.id?.uuidString ?? "", zones: zones,
            template: try await treatment.latestTemplate().map(ConsentController.text),
            signedOn: consent.map { c.text("consent.signed", ["date": LocalTime.words($0.signedAt, in: c.zone)]) }, hasPlan: plan != nil, typedName: typedName,
            question: question, errors: errors, fullName: c.patient.fullName)).encodeResponse(status: status, for: req)
    }

    struct SignForm: Content {
        var typedName: String?
        var signature: String?
        var templateID: String?
        var planID: String?
    }

    func sign(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let form = try req.content.decode(SignForm.self)
        let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
        do {
            guard let plan = try await treatment.latestPlan() else {
                throw InvalidInput(path: "plan", problem: c.text("consent.error.noPlan"))
            }
            // She signs the plan and the text she read: a plan or text version saved meanwhile must be read first.
            guard form.planID.flatMap(UUID.init(uuidString:)) == plan.id else {
                throw DomainError.conflict(c.text("consent.error.planChanged", ["version": "\(plan.version)"]))
            }
            guard let templateID = form.templateID.flatMap(UUID.init(uuidString:)) else {
                throw DomainError.conflict(c.text("consent.error.textChanged"))
            }
            // The same checks as on the clinic's tablet: the current text version, the registered name, a real drawing.
            let drawing = try await TreatmentService.drawnSignature(form.signature ?? "", on: req)
            _ = try await req.audited(.create, objectType: "Consent", patientID: c.patientID) {
                try await treatment.sign(plan: plan, templateID: templateID, typedName: form.typedName ?? "",
                                         drawing: drawing, source: RecordSource.patientPortal)
            }
            return req.redirect(to: "/my?done=signed", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderConsent(req, c, typedName: form.typedName ?? "", question: "", errors: Self.patientWords(invalid, c),
                                           status: .unprocessableEntity)
        } catch DomainError.conflict(let message) {
            return try await renderConsent(req, c, typedName: form.typedName ?? "", question: "", errors: [ErrorLine(field: "planID", message: message)],
                                           status: .conflict)
        }
    }

    struct QuestionForm: Content {
        var question: String?
    }

    static let maximumQuestion = 2000

    /// A question for the clinic: it waits on the practitioners' today board and the patient's course until answered.
    func ask(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let text = (try? req.content.decode(QuestionForm.self))?.question?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var issue: FieldIssue?
        if text.isEmpty { issue = FieldIssue(path: "question", problem: c.text("question.error.empty")) }
        if text.count > Self.maximumQuestion { issue = FieldIssue(path: "question", problem: c.text("question.error.long", ["max": "\(Self.maximumQuestion)"])) }
        if let issue {
            return try await renderConsent(req, c, typedName: "", question: text, errors: [ErrorLine(field: issue.path, message: issue.problem)],
                                           status: .unprocessableEntity)
        }
        let now = req.dermis.clock.now()
        if try await RateLimits.exceeded("portal-question:\(c.patientID)", limit: 10, window: 86_400, now: now, on: req.db) {
            return try await renderConsent(req, c, typedName: "", question: text,
                                           errors: [ErrorLine(field: "question", message: c.text("question.error.tooMany", ["phone": try await clinicPhone(req, c)]))],
                                           status: .tooManyRequests)
        }
        let plan = try await TreatmentService.forPatient(req: req, patient: c.patient).latestPlan()
        try await req.audited(.create, objectType: "PortalQuestion", patientID: c.patientID) {
            let question = PortalQuestion()
            question.$patient.id = c.patientID
            question.planID = plan?.id
            question.text = text
            question.askedAt = now
            try await question.create(on: req.db)
        }
        return req.redirect(to: "/my?done=asked", redirectType: .normal)
    }

    private func clinicPhone(_ req: Request, _ c: Context) async throws -> String {
        Self.phone(try await Location.query(on: req.db).filter(\.$clinic.$id == c.clinic.requireID()).filter(\.$active == true).first(), c)
    }

    // MARK: Booking the next session

    /// What the patient's next session would be booked as: their plan and the clinic's treatment service; or why they
    /// may not book it here, in their words.
    enum Bookable {
        case yes(plan: TreatmentPlanRecord, service: Service)
        case no(String)

        var note: String? { if case .no(let note) = self { note } else { nil } }
    }

    /// Whether the patient may book the next treatment of their series (`plan`: their latest, when already read).
    private func bookable(_ req: Request, _ c: Context, plan known: TreatmentPlanRecord?? = nil) async throws -> Bookable {
        let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
        let latest = if let known { known } else { try await treatment.latestPlan() }
        guard let plan = latest else { return .no(c.text("book.noPlan")) }
        let now = req.dermis.clock.now()
        let services = try await SchedulingService(req: req, clinicID: c.clinic.requireID()).services().filter(\.isTreatment)
        if let next = try await Self.live(Appointment.query(on: req.db).filter(\.$patient.$id == c.patientID).filter(\.$startsAt > now)
            .filter(\.$service.$id ~~ services.compactMap(\.id)), at: now).sort(\.$startsAt).first() {
            let zone = try await Location.find(next.$location.id, on: req.db)?.zone ?? c.zone
            return .no(c.text("book.alreadyBooked", ["when": LocalTime.words(next.startsAt, in: zone)]))
        }
        let signed = try await treatment.sessions().filter(\.isSigned)
        if Set(signed.filter { $0.$plan.id == plan.id }.map(\.chartID)).count >= (try plan.plan.series.sessions) {
            return .no(c.text("book.seriesComplete"))
        }
        guard let service = services.first(where: { $0.isPublic }) ?? services.first else { return .no(c.text("book.noService")) }
        return .yes(plan: plan, service: service)
    }

    struct SlotDay: Encodable {
        let day: String
        let slots: [Option]
    }

    struct BookPage: Encodable {
        let my: MyPage
        let action: String
        let heading: String
        let intervalNote: String?
        let locations: [Option]
        let location: String
        let days: [SlotDay]
        let from: String
        let later: String?
        let errors: [ErrorLine]
        let blocked: String?
    }

    /// Free times for the patient's planned zones, from `from` (or the first day the interval allows) for two weeks.
    private func slotPage(_ req: Request, _ c: Context, moving: Appointment?, errors: [ErrorLine], status: HTTPResponseStatus) async throws -> Response {
        let t = c.text
        let clinicID = try c.clinic.requireID()
        let scheduling = SchedulingService(req: req, clinicID: clinicID)
        let action = moving.map { "/my/appointments/\($0.id!.uuidString)/move" } ?? "/my/book"
        func blocked(_ note: String) async throws -> Response {
            try await req.view.render("my-book", BookPage(my: c.page(req, moving == nil ? "book.title" : "move.title"), action: action,
                                                          heading: t(moving == nil ? "book.title" : "move.title"), intervalNote: nil, locations: [],
                                                          location: "", days: [], from: "", later: nil, errors: errors, blocked: note))
                .encodeResponse(status: status == .ok ? .conflict : status, for: req)
        }
        let service: Service
        let zones: [String]
        if let moving {
            service = try await Service.require(moving.$service.id, on: req.db)
            zones = moving.zoneList
        } else {
            switch try await bookable(req, c) {
            case .no(let note): return try await blocked(note)
            case .yes(let plan, let treatment):
                zones = try plan.plan.zones.map(\.zone)
                service = treatment
            }
        }
        // A booking moves in time at its own location (a move keeps the location).
        let locations = if let moving { [try await Location.require(moving.$location.id, on: req.db)] } else { try await scheduling.locations() }
        guard !locations.isEmpty else { return try await blocked(t("book.noService")) }
        let chosen = (try? req.query.get(String.self, at: "location")) ?? (try? req.content.get(String.self, at: "location"))
        let location = locations.first { $0.id?.uuidString == chosen?.uppercased() } ?? moving.flatMap { m in locations.first { $0.id == m.$location.id } }
            ?? locations[0]
        let today = CalendarDate(req.dermis.clock.now(), in: location.zone)
        var from = today
        if let typed = try? req.query.get(String.self, at: "from"), let day = CalendarDate(iso: typed), day > today { from = day }
        // The series interval binds treatments only (a consultation carries no zones, and moves freely).
        let rule = service.isTreatment ? try await scheduling.seriesRule(patientID: c.patientID, zones: zones, ignoring: moving?.id) : nil
        if let earliest = rule?.earliest, earliest > from { from = earliest }
        let to = from.adding(days: 13)
        let found = try await scheduling.availability(SchedulingService.Search(
            location: location, service: service, zones: zones, from: from, to: to, patientID: c.patientID, gridMinutes: 30, ignoring: moving?.id))
        var days: [SlotDay] = []
        for slot in found.slots {
            let day = CalendarDate(slot.start, in: location.zone).description
            let label = CalendarController.clock(slot.start, in: location.zone)
            let option = Option(id: ISO8601DateFormatter().string(from: slot.start), name: label, selected: false)
            if days.last?.day == day {
                if !days[days.count - 1].slots.contains(where: { $0.name == label }) { days[days.count - 1] = SlotDay(day: day, slots: days[days.count - 1].slots + [option]) }
            } else {
                days.append(SlotDay(day: day, slots: [option]))
            }
        }
        let titled = days.map { SlotDay(day: Self.dayWords(CalendarDate(iso: $0.day)!), slots: $0.slots) }
        return try await req.view.render("my-book", BookPage(
            my: c.page(req, moving == nil ? "book.title" : "move.title"), action: action,
            heading: moving.map { t("move.heading", ["when": LocalTime.words($0.startsAt, in: location.zone)]) } ?? t("book.heading"),
            intervalNote: rule?.earliest.map { t("book.interval", ["date": Self.dayWords($0)]) },
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == location.id) },
            location: location.id!.uuidString, days: titled, from: from.description,
            later: to.adding(days: 1).description, errors: errors, blocked: nil)).encodeResponse(status: status, for: req)
    }

    func bookForm(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) {
            try await slotPage(req, c, moving: nil, errors: [], status: .ok)
        }
    }

    struct SlotForm: Content {
        var start: String?
        var location: String?
    }

    private func start(_ form: SlotForm?, _ c: Context) throws -> Date {
        guard let text = form?.start, let start = ISO8601DateFormatter().date(from: text) else {
            throw InvalidInput(path: "start", problem: c.text("book.error.start"))
        }
        return start
    }

    func book(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let form = try? req.content.decode(SlotForm.self)
        do {
            let start = try start(form, c)
            let scheduling = SchedulingService(req: req, clinicID: try c.clinic.requireID())
            // A clinic that takes deposits holds the time until the deposit is paid, as on the public booking page: the
            // patient goes on to its page (the policy, then the provider's checkout).
            let deposit = try await Deposits(db: req.db, clinicID: try c.clinic.requireID(), provider: req.application.payments,
                                             now: req.dermis.clock.now()).policy()
            let token = deposit == nil ? nil : Secrets.token()
            // One booking at a time per patient: the checks (one next session, the interval) and the booking are one unit
            // of work under the patient's row lock, so two presses at once cannot both pass them.
            _ = try await req.audited(.create, objectType: "Appointment", patientID: c.patientID) {
                try await Patient.lockRow(c.patientID, on: req.db)
                let next = try await bookable(req, c)
                guard case .yes(let plan, let service) = next else { throw DomainError.conflict(next.note ?? "") }
                let location = try await scheduling.location(form?.location.flatMap(UUID.init(uuidString:)))
                guard location.active else { throw InvalidInput(path: "location", problem: c.text("book.error.location")) }
                return try await scheduling.book(SchedulingService.Booking(
                    location: location, service: service, zones: try plan.plan.zones.map(\.zone), start: start, practitionerID: nil,
                    patientID: c.patientID, contactName: c.patient.fullName, contactEmail: c.patient.email ?? "", contactPhone: c.patient.phoneE164 ?? "",
                    notes: "Booked by the patient on their own pages.", source: RecordSource.patientPortal, status: token == nil ? .booked : .pending,
                    overrideReason: nil, seriesID: nil),
                    by: nil, confirmTokenHash: token.map(Secrets.digest))
            }
            if let token { return req.redirect(to: "/book/confirm/\(token)", redirectType: .normal) }
            return req.redirect(to: "/my?done=booked", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await slotPage(req, c, moving: nil, errors: Self.patientWords(invalid, c), status: .unprocessableEntity)
        } catch is SchedulingService.Conflict {
            return try await slotPage(req, c, moving: nil, errors: [ErrorLine(field: "start", message: c.text("book.error.taken"))], status: .conflict)
        } catch DomainError.conflict {
            // No longer bookable (a session booked meanwhile, the series complete): the page says why, once.
            return try await slotPage(req, c, moving: nil, errors: [], status: .conflict)
        }
    }

    // MARK: The patient's own appointments

    /// The patient's appointment named in the path: another patient's, or an unknown id, is 404.
    private func ownAppointment(_ req: Request, _ c: Context) async throws -> Appointment {
        let id = try req.uuidParameter("appointmentID", notFound: c.text("appointments.notFound"))
        guard let a = try await Appointment.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == c.patientID)
            .filter(\.$clinic.$id == c.clinic.requireID()).first() else { throw Abort(.notFound, reason: c.text("appointments.notFound")) }
        return a
    }

    func ics(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) {
            try await CalendarController.icsResponse(try await ownAppointment(req, c), req)
        }
    }

    /// Why the patient may not change this booking themselves, in their words, or nil when they may: it must still be
    /// booked (or held) and at least the clinic's notice period away.
    private func refusal(_ req: Request, _ c: Context, _ a: Appointment) async throws -> String? {
        guard [.booked, .pending].contains(a.appointmentStatus), a.startsAt > req.dermis.clock.now() else {
            return c.text("appointments.notChangeable")
        }
        let hours = noticeHours(c)
        guard Self.mayChange(a, noticeHours: hours, now: req.dermis.clock.now()) else {
            return c.text("appointments.tooLate", ["hours": "\(hours)", "phone": Self.phone(try await Location.find(a.$location.id, on: req.db), c)])
        }
        return nil
    }

    /// A change the patient may not make, refused on their home page with the reason (409), nothing changed.
    private struct Refused: Error {
        let message: String
    }

    private func requireChangeable(_ req: Request, _ c: Context, _ a: Appointment) async throws {
        if let message = try await refusal(req, c, a) { throw Refused(message: message) }
    }

    func moveForm(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let a = try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) { try await ownAppointment(req, c) }
        if let message = try await refusal(req, c, a) {
            return try await renderHome(req, c, errors: [ErrorLine(field: "appointment", message: message)], status: .conflict)
        }
        return try await slotPage(req, c, moving: a, errors: [], status: .ok)
    }

    func move(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let a = try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) { try await ownAppointment(req, c) }
        let form = try? req.content.decode(SlotForm.self)
        do {
            let start = try start(form, c)
            try await req.audited(.update, objectType: "Appointment", objectID: a.id?.uuidString, patientID: c.patientID) {
                try await requireChangeable(req, c, a)
                _ = try await SchedulingService(req: req, clinicID: try c.clinic.requireID())
                    .move(a, to: start, practitionerID: nil, expectedVersion: a.version)
            }
            return req.redirect(to: "/my?done=moved", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await slotPage(req, c, moving: a, errors: Self.patientWords(invalid, c), status: .unprocessableEntity)
        } catch is SchedulingService.Conflict {
            return try await slotPage(req, c, moving: a, errors: [ErrorLine(field: "start", message: c.text("book.error.taken"))], status: .conflict)
        } catch let refused as Refused {
            return try await renderHome(req, c, errors: [ErrorLine(field: "appointment", message: refused.message)], status: .conflict)
        } catch DomainError.conflict {
            // Changed at the clinic meanwhile (moved, cancelled): the page shows it as it is now.
            return try await renderHome(req, c, errors: [ErrorLine(field: "appointment", message: c.text("appointments.changedMeanwhile"))], status: .conflict)
        }
    }

    /// A time held for its deposit: back to its deposit page (a fresh link to it; the one before stops working).
    func payDeposit(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let token = Secrets.token()
        do {
            try await req.audited(.update, objectType: "Appointment", patientID: c.patientID) {
                let a = try await ownAppointment(req, c)
                guard a.appointmentStatus == .pending, a.source == RecordSource.patientPortal,
                      (a.holdExpiresAt ?? .distantPast) > req.dermis.clock.now() else {
                    throw DomainError.conflict("no longer held")
                }
                try await ConditionalUpdate(Appointment.self, id: try a.requireID(), on: req.db).where(\.$status, .equal, AppointmentStatus.pending.rawValue)
                    .set(\.$confirmTokenHash, to: Secrets.digest(token)).run(orThrow: DomainError.conflict("no longer held"))
            }
        } catch DomainError.conflict {
            // Confirmed or lapsed meanwhile: the home page says where it stands.
            return req.redirect(to: "/my", redirectType: .normal)
        }
        return req.redirect(to: "/book/confirm/\(token)", redirectType: .normal)
    }

    /// Where the provider sends the patient back after paying a deposit for a time booked here: the payment is asked
    /// of the provider at once (the webhook may come later), then home. It names the appointment, never a link token, so
    /// a fresh link asked for meanwhile does not strand the patient.
    func depositPaid(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let a = try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) { try await ownAppointment(req, c) }
        let deposits = Deposits(db: req.db, clinicID: try c.clinic.requireID(), provider: req.application.payments, now: req.dermis.clock.now())
        if a.appointmentStatus == .pending, let provider = req.application.payments, let deposit = try await deposits.deposit(of: a),
           deposit.depositStatus == .awaitingPayment, let checkout = deposit.checkoutID,
           let session = try? await provider.checkout(checkout), session.isPaid {
            do {
                try await req.audited(.update, objectType: "Deposit", objectID: deposit.id?.uuidString, patientID: c.patientID) {
                    _ = try await deposits.paid(session, req: req)
                }
            } catch DomainError.conflict {
                // The webhook recorded it a moment before.
            }
        }
        let now = try await Appointment.find(a.id, on: req.db)
        return req.redirect(to: now?.appointmentStatus == .booked ? "/my?done=booked" : "/my", redirectType: .normal)
    }

    func cancel(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let a = try await req.audited(.read, objectType: "Appointment", patientID: c.patientID) { try await ownAppointment(req, c) }
        do {
            try await req.audited(.update, objectType: "Appointment", objectID: a.id?.uuidString, patientID: c.patientID) {
                try await requireChangeable(req, c, a)
                _ = try await SchedulingService(req: req, clinicID: try c.clinic.requireID()).setStatus(a, to: .cancelled, expectedVersion: a.version)
            }
        } catch let refused as Refused {
            return try await renderHome(req, c, errors: [ErrorLine(field: "appointment", message: refused.message)], status: .conflict)
        } catch DomainError.conflict {
            return try await renderHome(req, c, errors: [ErrorLine(field: "appointment", message: c.text("appointments.changedMeanwhile"))], status: .conflict)
        }
        return req.redirect(to: "/my?done=cancelled", redirectType: .normal)
    }

    // MARK: Aftercare, progress and photos

    /// The patient's usable aftercare link for the chart in the path, as the link pages expect it.
    private func link(_ req: Request, _ c: Context) async throws {
        let chartID = try req.uuidParameter("chartID", notFound: c.text("care.notFound"))
        guard let link = try await PatientLink.query(on: req.db).filter(\.$chartID == chartID).filter(\.$patient.$id == c.patientID)
            .filter(\.$revokedAt == nil).sort(\.$createdAt, .descending).first(), link.isUsable(at: req.dermis.clock.now()) else {
            throw Abort(.notFound, reason: c.text("care.notFound"))
        }
        req.patientLink = link
    }

    func care(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        try await link(req, c)
        return try await CareController().show(req: req)
    }

    func checkIn(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        try await link(req, c)
        return try await CareController().checkIn(req: req)
    }

    struct ProgressPage: Encodable {
        let my: MyPage
        let series: String
        let sessions: [String]
        let next: String?
        let photos: [Option]
    }

    func progress(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Patient", patientID: c.patientID) {
            let t = c.text
            let treatment = try TreatmentService.forPatient(req: req, patient: c.patient)
            let plan = try await treatment.latestPlan()
            let signed = try await treatment.sessions().filter(\.isSigned)
            let planned = try plan?.plan.series.sessions
            // Sessions of the current plan's series (an earlier course is not counted against it).
            let done = Set(signed.filter { $0.$plan.id == plan?.id }.map(\.chartID)).count
            let series = planned.map { t("progress.series", ["done": "\(done)", "of": "\($0)"]) } ?? t("progress.noPlan")
            var next: String?
            if let plan, let rule = try await SchedulingService(req: req, clinicID: try c.clinic.requireID())
                .seriesRule(patientID: c.patientID, zones: try plan.plan.zones.map(\.zone), ignoring: nil), let earliest = rule.earliest {
                next = t("progress.next", ["date": Self.dayWords(earliest)])
            }
            let p = req.dermis.clinicalProtocol
            let photos = try await Photo.query(on: req.db).filter(\.$patient.$id == c.patientID).filter(\.$sharedAt != nil).sort(\.$takenOn).all()
            return try await req.view.render("my-progress", ProgressPage(
                my: c.page(req, "progress.title"), series: series,
                sessions: signed.map { t("progress.session", ["date": LocalTime.words($0.signedAt ?? $0.createdAt, in: c.zone)]) },
                next: next,
                photos: photos.map { photo in
                    Option(id: photo.id!.uuidString,
                           name: t("progress.photo", ["area": p.zone(photo.zone)?.displayName ?? photo.zone, "date": photo.takenOn]), selected: false)
                })).encodeResponse(for: req)
        }
    }

    /// A photo the practitioner shared with the patient; any other (another patient's, or one not shared) is 404.
    func photo(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        let id = try req.uuidParameter("photoID", notFound: c.text("photo.notFound"))
        return try await req.audited(.read, objectType: "Photo", objectID: id.uuidString, patientID: c.patientID) {
            guard let photo = try await Photo.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == c.patientID)
                .filter(\.$sharedAt != nil).first() else { throw Abort(.notFound, reason: c.text("photo.notFound")) }
            return try await PhotoService(req: req).response(for: photo)
        }
    }

    // MARK: Devices

    struct AccountPage: Encodable {
        let my: MyPage
        let devices: [Option]
        let name: String
        let contact: String
    }

    func account(req: Request) async throws -> Response {
        let c = try await Self.context(req)
        return try await req.audited(.read, objectType: "Patient", patientID: c.patientID) {
            let sessions = try await PortalSessions.live(patientID: c.patientID, at: req.dermis.clock.now(), on: req.db)
            let devices = sessions.map { s in
                Option(id: s.id?.uuidString ?? "",
                       name: c.text("account.device", ["device": s.device, "since": LocalTime.words(s.createdAt, in: c.zone),
                                                      "last": LocalTime.words(s.lastSeenAt, in: c.zone)]),
                       selected: s.id == c.portal.sessionID)
            }
            let contact = c.text("account.contact", ["contact": [c.patient.email, c.patient.phoneE164].compactMap { $0 }.filter { !$0.isEmpty }
                .joined(separator: " · ")])
            return try await req.view.render("my-account", AccountPage(my: c.page(req, "account.title"), devices: devices,
                                                                      name: c.patient.fullName, contact: contact)).encodeResponse(for: req)
        }
    }
}
