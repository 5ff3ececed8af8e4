import DermisCore
import Fluent
import Foundation
import Vapor

/// The patient's side, reached by their personal link with no account: today's aftercare first, the whole
/// timeline, and a check-in form (with an optional photo). Every open and every report is audited.
struct CareController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let care = routes.grouped("care", ":token")
        care.get(use: show).access(.patientLink)
        care.on(.POST, "check-ins", body: .collect(maxSize: PhotoService.maxBody), use: checkIn).access(.patientLink)
    }

    struct TimelineRow: Encodable {
        let id: String
        let when: String
        let from: String
        let until: String
        let instruction: String
        let source: String
        let today: Bool

        /// The schedule's items with their times in the clinic's zone; `today` marks those in force on `now`'s day.
        static func rows(_ schedule: AftercareSchedule, in zone: TimeZone, now: Date? = nil) -> [TimelineRow] {
            let todays = now.map { Set(schedule.items(onDayOf: $0, in: zone).map(\.id)) } ?? []
            return schedule.items.map { item in
                TimelineRow(id: item.id, when: AftercareWindow(fromHour: item.fromHour, toHour: item.toHour).words,
                            from: LocalTime.words(item.starts, in: zone), until: item.ends.map { LocalTime.words($0, in: zone) } ?? "",
                            instruction: item.instruction, source: item.source, today: todays.contains(item.id))
            }
        }
    }

    struct PastCheckIn: Encodable {
        let text: String
        let flagged: Bool
    }

    struct CarePage: Encodable {
        let clinicName: String
        /// Where the check-in form posts: the link's own address, or the patient's pages'.
        let action: String
        /// Opened inside the patient's own pages (a way back to them), not from the link alone.
        let inPortal: Bool
        let heading: String
        let summary: String
        let todayHeading: String
        let today: [TimelineRow]
        let timeline: [TimelineRow]
        let redness: [Option]
        let pain: [Option]
        let signs: [Option]
        let zones: [Option]
        let views: [Option]
        let gais: [Option]
        let checkIns: [PastCheckIn]
        let printNote: String
        let errors: [ErrorLine]
        let thanks: Bool
        let flags: [String]
        /// The patient text catalogue's sentences, keyed for templates.
        let t: [String: String]
    }

    func show(req: Request) async throws -> Response {
        try await render(req, status: .ok, errors: [], thanks: false, flags: [])
    }

    /// The check-in form's address: the link's own, or — opened from the patient's pages — theirs.
    private static func action(_ req: Request, _ link: PatientLink) -> String? {
        if req.portal != nil { return "/my/care/\(link.chartID)/check-ins" }
        return req.parameters.get("token").map { "/care/\($0)/check-ins" }
    }

    func render(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine], thanks: Bool, flags: [String]) async throws -> Response {
        guard let link = req.patientLink, let action = Self.action(req, link) else { throw Abort(.notFound) }
        let service = FollowUpService(req: req)
        let (aftercare, patient) = try await req.audited(.read, objectType: "AftercarePlan", objectID: link.chartID.uuidString,
                                                         patientID: link.$patient.id) {
            guard let aftercare = try await service.latestAftercare(of: link.chartID),
                  let patient = try await Patient.find(link.$patient.id, on: req.db) else { throw Abort(.notFound) }
            return (aftercare, patient)
        }
        let schedule = try aftercare.schedule
        let clinic = try await req.clinic()
        let zone = clinic?.zone ?? .current
        let now = req.dermis.clock.now()
        let rows = TimelineRow.rows(schedule, in: zone, now: now)
        let p = req.dermis.clinicalProtocol
        func options(_ scaleID: String) -> [Option] { p.outcomeScale(scaleID).map { Option.levels(of: $0) } ?? [] }
        let session = try await TreatmentSession.query(on: req.db).filter(\.$chartID == link.chartID).sort(\.$version, .descending).first()
        let zones = (session?.zones ?? []).map { Option(id: $0.zone, name: p.zone($0.zone)?.displayName ?? $0.zone, selected: false) }
        let past = try await CheckIn.query(on: req.db).filter(\.$chartID == link.chartID).sort(\.$submittedAt, .descending).all()
        let t = req.dermis.patientText
        let clinicName = clinic?.name ?? t("clinic.fallback")
        let page = CarePage(
            clinicName: clinicName, action: action, inPortal: req.portal != nil,
            heading: t("care.heading", ["name": patient.givenName]),
            summary: t("care.summary", ["clinic": clinicName, "treated": LocalTime.words(schedule.sessionEnd, in: zone),
                                        "depth": formatMillimetres(schedule.deepestDepthMm), "min": "\(schedule.downtime.min)",
                                        "max": "\(schedule.downtime.max)"]),
            todayHeading: t("care.today", ["day": "\(schedule.day(of: now, in: zone))"]),
            today: rows.filter(\.today), timeline: rows,
            redness: options(p.followUp.rednessScale), pain: options(p.followUp.painScale),
            signs: p.followUp.infectionSigns.map { Option(id: $0.id, name: $0.label, selected: false) },
            zones: zones, views: Photo.views.map { Option(id: $0.id, name: $0.label, selected: $0.id == "front") },
            gais: p.outcomeScales.contains { $0.id == "gais" && $0.raters.contains("patient") } ? options("gais") : [],
            checkIns: past.map { c in
                PastCheckIn(text: t("care.earlierItem", ["day": "\(c.day)", "when": LocalTime.words(c.submittedAt, in: zone),
                                                         "redness": "\(c.redness)", "pain": "\(c.pain)"]), flagged: !c.flags.isEmpty)
            },
            printNote: t("care.print", ["until": LocalTime.words(link.expiresAt, in: zone)]), errors: errors, thanks: thanks, flags: flags,
            t: t.templateKeys)
        return try await req.view.render("care", page).response(status, for: req)
    }

    struct CheckInForm: Content {
        var redness: String?
        var pain: String?
        var swelling: String?
        var itching: String?
        var signs: [String]?
        var notes: String?
        var photo: File?
        var zone: String?
        var view: String?
        var gais: String?
    }

    func checkIn(req: Request) async throws -> Response {
        guard let link = req.patientLink else { throw Abort(.notFound) }
        let p = req.dermis.clinicalProtocol
        let now = req.dermis.clock.now()
        if try await RateLimits.exceeded("check-in:\(try link.requireID())", limit: p.followUp.checkInsPerLinkPerDay,
                                         window: 86_400, now: now, on: req.db) {
            throw Abort(.tooManyRequests, reason: req.dermis.patientText("care.error.tooMany", ["count": "\(p.followUp.checkInsPerLinkPerDay)"]))
        }
        let form: CheckInForm
        do {
            form = try req.content.decode(CheckInForm.self)
        } catch {
            return try await render(req, status: .unprocessableEntity, errors: [ErrorLine(field: "form", message: req.dermis.patientText("care.error.form"))], thanks: false, flags: [])
        }
        var issues: [FieldIssue] = []
        func score(_ text: String?, _ field: String) -> Int {
            guard let text, let value = Int(text) else { issues.append(FieldIssue(path: field, problem: req.dermis.patientText("care.error.choose"))); return -1 }
            return value
        }
        let report = CheckInReport(redness: score(form.redness, "redness"), pain: score(form.pain, "pain"),
                                   swelling: form.swelling != nil, itching: form.itching != nil,
                                   infectionSigns: form.signs ?? [], notes: (form.notes ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
        if issues.isEmpty { issues = report.issues(protocol: p) }
        var rating: Int?
        do { rating = try FollowUpService.patientRating(form.gais, protocol: p) } catch let invalid as InvalidInput { issues += invalid.issues }
        do {
            if !issues.isEmpty { throw InvalidInput(issues) }
            let service = FollowUpService(req: req)
            let photos = PhotoService(req: req)
            var upload: PhotoService.Upload?
            if let file = form.photo, file.data.readableBytes > 0 {
                let clinic = try await req.clinic()
                upload = .init(data: Data(buffer: file.data), patientID: link.$patient.id, chartID: link.chartID, zone: form.zone ?? "",
                               view: form.view ?? "front", takenOn: CalendarDate(now, in: clinic?.zone ?? .current), source: "patient-link",
                               uploadedBy: nil)
            }
            // The photo is cleaned before the unit of work; its row, the check-in, the rating and the events commit together.
            let outcome = try await photos.keeping(upload) { prepared in
                try await req.audited(.create, objectType: "CheckIn", patientID: link.$patient.id,
                                      subject: { (o: FollowUpService.CheckInOutcome) in o.checkIn.$patient.id }) {
                    var photoID: UUID?
                    if let prepared { photoID = try await photos.record(prepared).id }
                    let outcome = try await service.checkIn(report, through: link, photoID: photoID)
                    if let rating { try await service.ratePatientGAIS(rating, through: link) }
                    for event in outcome.openedEvents {
                        try await req.audit(.create, objectType: "AdverseEvent", objectID: event.id?.uuidString, patientID: link.$patient.id, outcome: .success)
                    }
                    return outcome
                }
            }
            return try await render(req, status: .created, errors: [], thanks: true, flags: outcome.flags.map(\.message))
        } catch let invalid as InvalidInput {
            return try await render(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid), thanks: false, flags: [])
        }
    }
}

/// Times as a patient reads them, in the clinic's zone: "Fri 27 Nov, 15:00".
enum LocalTime {
    static func words(_ instant: Date, in zone: TimeZone) -> String {
        var style = Date.FormatStyle(date: .omitted, time: .omitted, locale: Locale(identifier: "en_GB"), calendar: Calendar(identifier: .gregorian), timeZone: zone)
        style = style.weekday(.abbreviated).day(.defaultDigits).month(.abbreviated).hour(.twoDigits(amPM: .omitted)).minute(.twoDigits)
        return instant.formatted(style)
    }
}
