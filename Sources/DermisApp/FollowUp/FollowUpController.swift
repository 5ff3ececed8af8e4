import DermisCore
import Fluent
import Foundation
import Vapor

/// The practitioner's side of follow-up for one session: its aftercare, the patient's link, the check-ins with
/// their flags, and the session's outcome scores.
struct FollowUpController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "AftercarePlan")
        let session = routes.grouped("patients", ":patientID", "sessions", ":chartID")
        session.get("follow-up", use: show).access(clinical)
        session.post("link", use: issueLink).access(clinical)
        session.post("link", "revoke", use: revokeLink).access(clinical)
        session.post("outcomes", use: saveOutcomes).access(clinical)
        let api = routes.grouped("api", "v1", "patients", ":patientID", "sessions", ":chartID")
        api.get("aftercare", use: apiAftercare).access(clinical)
        api.post("link", use: apiIssueLink).access(clinical)
        api.get("check-ins", use: apiCheckIns).access(clinical)
        api.put("outcomes", use: apiSaveOutcomes).access(clinical)
    }

    private func context(_ req: Request) async throws -> (patient: Patient, session: TreatmentSession) {
        let patient = try await req.patient()
        let service = TreatmentService(req: req, patient: patient, staff: try req.staff())
        let session = try await service.latestVersion(of: try req.uuidParameter("chartID", notFound: "No such session."))
        return (patient, session)
    }

    // MARK: The follow-up page

    struct CheckInRow: Encodable {
        let when: String
        let day: Int
        let redness: Int
        let pain: Int
        let other: String
        let notes: String
        let flags: [CheckInFlag]
        let photoID: String?
    }

    struct ScoreField: Encodable {
        let name: String
        let scale: String
        let rater: String
        let options: [Option]
        let source: String
    }

    struct FollowUpPage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let chartID: String
        let signed: Bool
        let canEdit: Bool
        let sessionEnd: String?
        let downtime: String?
        let items: [CareController.TimelineRow]
        let linkActive: Bool
        let linkExpires: String?
        let newLink: String?
        let checkIns: [CheckInRow]
        let scores: [ScoreField]
        let eventTypes: [Option]
        let errors: [ErrorLine]
    }

    func show(req: Request) async throws -> Response {
        try await render(req, status: .ok)
    }

    func render(_ req: Request, status: HTTPResponseStatus, newLink: String? = nil, errors: [ErrorLine] = []) async throws -> Response {
        let (patient, session) = try await context(req)
        let follow = FollowUpService(req: req)
        let aftercare = try await req.audited(.read, objectType: "AftercarePlan", objectID: session.chartID.uuidString) {
            try await follow.latestAftercare(of: session.chartID)
        }
        let schedule = try aftercare?.schedule
        let zone = try await req.clinic()?.zone ?? .current
        let link = try await follow.activeLink(chartID: session.chartID)
        let checkIns = try await CheckIn.query(on: req.db).filter(\.$chartID == session.chartID).sort(\.$submittedAt, .descending).all()
        let p = req.dermis.clinicalProtocol
        let signs = Dictionary(uniqueKeysWithValues: p.followUp.infectionSigns.map { ($0.id, $0.label) })
        let staff = try req.staff()
        let page = FollowUpPage(
            page: try await PageHeader(req, title: "Follow-up"), patientID: try patient.requireID().uuidString,
            patientName: patient.fullName, chartID: session.chartID.uuidString, signed: session.isSigned,
            canEdit: AccessRule.clinical.contains(staff.role),
            sessionEnd: schedule.map { LocalTime.words($0.sessionEnd, in: zone) },
            downtime: schedule.map { "\($0.downtime.min)–\($0.downtime.max) days at \(formatMillimetres($0.deepestDepthMm)) mm (\($0.downtime.source))" },
            items: schedule.map { CareController.TimelineRow.rows($0, in: zone) } ?? [],
            linkActive: link != nil, linkExpires: link.map { LocalTime.words($0.expiresAt, in: zone) }, newLink: newLink,
            checkIns: checkIns.map { c in
                CheckInRow(when: LocalTime.words(c.submittedAt, in: zone), day: c.day, redness: c.redness, pain: c.pain,
                           other: ([c.swelling ? "swelling" : nil, c.itching ? "itching" : nil].compactMap { $0 } + c.signs.map { signs[$0] ?? $0 }).joined(separator: ", "),
                           notes: c.notes, flags: c.flags, photoID: c.photoID?.uuidString)
            },
            scores: try await scoreFields(req, session: session),
            eventTypes: p.followUp.eventTypes.map { Option(id: $0.id, name: $0.label, selected: false) }, errors: errors)
        return try await req.view.render("follow-up", page).response(status, for: req)
    }

    /// One field per scale and rater that suits the session's indications, with the current score selected.
    private func scoreFields(_ req: Request, session: TreatmentSession) async throws -> [ScoreField] {
        let p = req.dermis.clinicalProtocol
        let indications = Set(try await TreatmentPlanRecord.find(session.$plan.id, on: req.db)?.planRequest.zones.map(\.indication) ?? [])
        let existing = try await OutcomeScore.query(on: req.db).filter(\.$chartID == session.chartID).all()
        return p.outcomeScales.filter { scale in scale.indications.map { !indications.isDisjoint(with: $0) } ?? true }
            .filter { $0.id != p.followUp.rednessScale }
            .flatMap { scale in
                scale.raters.map { rater in
                    let current = existing.first { $0.scale == scale.id && $0.rater == rater }?.value
                    return ScoreField(name: "\(scale.id).\(rater)", scale: scale.name, rater: rater,
                                      options: Option.levels(of: scale, selected: current),
                                      source: scale.source)
                }
            }
    }

    func issueLink(req: Request) async throws -> Response {
        let (patient, session) = try await context(req)
        let staff = try req.staff()
        let (_, token) = try await req.audited(.create, objectType: "PatientLink", objectID: session.chartID.uuidString) {
            try await Self.issueAndMail(req, patient: patient, chartID: session.chartID, by: staff.userID)
        }
        return try await render(req, status: .created, newLink: Self.url(req, token: token))
    }

    static func url(_ req: Request, token: String) -> String { absoluteURL(req, "/care/\(token)") }

    /// A new link (the old one withdrawn), e-mailed to the patient when the record has an address.
    static func issueAndMail(_ req: Request, patient: Patient, chartID: UUID, by staffID: UUID) async throws -> (link: PatientLink, token: String) {
        let service = FollowUpService(req: req)
        let issued = try await service.createLink(chartID: chartID, patientID: try patient.requireID(), by: staffID)
        try await service.mailLink(issued.token, link: issued.link, to: patient)
        return issued
    }

    /// A link to this server for a message or a page to show: under DERMIS_PUBLIC_URL when set (a forged Host header
    /// then cannot redirect a patient's link), else from the request's Host (HTTPS when the server runs behind it).
    static func absoluteURL(_ req: Request, _ path: String) -> String {
        if let base = req.dermis.settings.publicURL { return base + path }
        let host = req.headers.first(name: .host) ?? "localhost:8080"
        let scheme = req.dermis.settings.usesSecureCookies ? "https" : "http"
        return "\(scheme)://\(host)\(path)"
    }

    func revokeLink(req: Request) async throws -> Response {
        let (patient, session) = try await context(req)
        let staff = try req.staff()
        try await req.audited(.update, objectType: "PatientLink", objectID: session.chartID.uuidString) {
            try await FollowUpService(req: req).revokeLinks(chartID: session.chartID, by: staff.userID)
        }
        return req.redirect(to: "/patients/\(try patient.requireID())/sessions/\(session.chartID)/follow-up", redirectType: .normal)
    }

    // MARK: Outcome scores

    /// Saves the given scores (`scale.rater` → value; empty leaves a score unset, `clear` removes it).
    func storeScores(_ req: Request, session: TreatmentSession, _ values: [String: String]) async throws {
        // An outcome belongs to a treatment that happened as charted: a draft can still change or be abandoned.
        guard session.isSigned else {
            throw Abort(.conflict, reason: "Outcome scores are recorded against a signed chart; sign this session's chart first.")
        }
        let p = req.dermis.clinicalProtocol
        var issues: [FieldIssue] = []
        var parsed: [(scale: String, rater: String, value: Int)] = []
        for (key, text) in values.sorted(by: { $0.key < $1.key }) where !text.isEmpty {
            let parts = key.split(separator: ".").map(String.init)
            guard parts.count == 2, let scale = p.outcomeScale(parts[0]) else {
                issues.append(FieldIssue(path: key, problem: "unknown outcome scale; valid: \(p.outcomeScales.map(\.id).joined(separator: ", "))"))
                continue
            }
            guard scale.raters.contains(parts[1]) else {
                issues.append(FieldIssue(path: key, problem: "\(scale.name) is rated by \(scale.raters.joined(separator: " or "))"))
                continue
            }
            guard let value = Int(text), (scale.min...scale.max).contains(value) else {
                issues.append(FieldIssue(path: key, problem: "must be a whole number from \(scale.min) to \(scale.max)"))
                continue
            }
            parsed.append((scale.id, parts[1], value))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        try await FollowUpService(req: req).replaceScores(parsed, chartID: session.chartID, patientID: session.$patient.id, by: try req.staff().userID)
    }

    func saveOutcomes(req: Request) async throws -> Response {
        let (patient, session) = try await context(req)
        let values = try req.content.decode([String: String].self).filter { $0.key.contains(".") }
        do {
            try await req.audited(.update, objectType: "OutcomeScore", objectID: session.chartID.uuidString) {
                try await storeScores(req, session: session, values)
            }
        } catch let invalid as InvalidInput {
            return try await render(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid))
        }
        return req.redirect(to: "/patients/\(try patient.requireID())/sessions/\(session.chartID)/follow-up?saved=1", redirectType: .normal)
    }

    // MARK: API

    func apiAftercare(req: Request) async throws -> Response {
        let (_, session) = try await context(req)
        let plan = try await req.audited(.read, objectType: "AftercarePlan", objectID: session.chartID.uuidString) {
            guard let plan = try await FollowUpService(req: req).latestAftercare(of: session.chartID) else {
                throw Abort(.notFound, reason: "No aftercare yet: it is issued when the chart is signed.")
            }
            return plan
        }
        let response = Response(status: .ok, body: .init(string: try plan.scheduleJSONForAPI))
        response.headers.contentType = .json
        return response
    }

    struct LinkJSON: Content {
        let url: String
        let expiresAt: Date
    }

    func apiIssueLink(req: Request) async throws -> Response {
        let (patient, session) = try await context(req)
        let staff = try req.staff()
        let (link, token) = try await req.audited(.create, objectType: "PatientLink", objectID: session.chartID.uuidString) {
            try await Self.issueAndMail(req, patient: patient, chartID: session.chartID, by: staff.userID)
        }
        return try await LinkJSON(url: Self.url(req, token: token), expiresAt: link.expiresAt).encodeResponse(status: .created, for: req)
    }

    struct CheckInJSON: Content {
        let id: UUID
        let submittedAt: Date
        let day: Int
        let redness: Int
        let pain: Int
        let swelling: Bool
        let itching: Bool
        let infectionSigns: [String]
        let notes: String
        let photoID: UUID?
        let flags: [CheckInFlag]
    }

    func apiCheckIns(req: Request) async throws -> [CheckInJSON] {
        let (_, session) = try await context(req)
        return try await req.audited(.read, objectType: "CheckIn", objectID: session.chartID.uuidString) {
            try await CheckIn.query(on: req.db).filter(\.$chartID == session.chartID).sort(\.$submittedAt).all().map {
                CheckInJSON(id: try $0.requireID(), submittedAt: $0.submittedAt, day: $0.day, redness: $0.redness, pain: $0.pain,
                            swelling: $0.swelling, itching: $0.itching, infectionSigns: $0.signs, notes: $0.notes, photoID: $0.photoID, flags: $0.flags)
            }
        }
    }

    struct ScoresInput: Content {
        /// `scale.rater` → value, e.g. `{"gais.patient": 2}`.
        let scores: [String: Int]
    }

    func apiSaveOutcomes(req: Request) async throws -> HTTPStatus {
        let (_, session) = try await context(req)
        let input = try req.decodeJSON(ScoresInput.self)
        try await req.audited(.update, objectType: "OutcomeScore", objectID: session.chartID.uuidString) {
            try await storeScores(req, session: session, input.scores.mapValues(String.init))
        }
        return .noContent
    }
}

extension AftercarePlan {
    /// The schedule as the API returns it: ISO 8601 times.
    var scheduleJSONForAPI: String {
        get throws {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys]
            return String(decoding: try encoder.encode(try schedule), as: UTF8.self)
        }
    }
}
