import DermisCore
import Fluent
import SQLKit
import Vapor

/// Signing in to the patient's own pages without a password: the patient gives the e-mail address or mobile number the
/// clinic has, and a one-time link (256 bits, its digest kept, 15 minutes) goes out through the outbox. The page says
/// the same whether or not the address is known. Opening the link shows a button: a mail scanner that fetches links
/// does not spend it; pressing it does, once, and starts a 30-day session on that device.
struct PortalSignInController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let my = routes.grouped("my")
        my.get("sign-in", use: form).access(.open)
        my.post("sign-in", use: request).access(.open)
        my.get("link", ":token", use: confirmPage).access(.open)
        my.post("link", ":token", use: useLink).access(.open)
        my.post("sign-out", use: signOut).access(.patient)
        my.post("sign-out-everywhere", use: signOutEverywhere).access(.patient)
        // Staff end a patient's sessions (a lost phone, a shared device); any role that keeps the patient's record.
        routes.post("patients", ":patientID", "portal", "end", use: staffEnd).access(.staff(AccessRule.anyStaff, audits: "Patient"))
    }

    struct SignInPage: Encodable {
        let my: MyPage
        let address: String
        let sent: Bool
        let notice: String?
        let errors: [ErrorLine]
        let clinic: String?
    }

    /// The clinic signed in to (`?clinic=` when the database holds several).
    static func clinic(_ req: Request) async throws -> Clinic {
        try await req.publicClinic(several: "This server serves several clinics: use the sign-in link your clinic gave you.")
    }

    func form(req: Request) async throws -> Response {
        let clinic = try await Self.clinic(req)
        let notice = (try? req.query.get(String.self, at: "signedOut")) != nil ? req.dermis.patientText("signIn.signedOut") : nil
        return try await render(req, clinic: clinic, address: "", sent: false, notice: notice, errors: [], status: .ok)
    }

    private func render(_ req: Request, clinic: Clinic, address: String, sent: Bool, notice: String?, errors: [ErrorLine],
                        status: HTTPResponseStatus) async throws -> Response {
        try await req.view.render("my-sign-in", SignInPage(
            my: MyPage(req, clinic: clinic, title: req.dermis.patientText("signIn.title"), signedIn: false), address: address, sent: sent,
            notice: notice, errors: errors, clinic: clinic.id?.uuidString)).encodeResponse(status: status, for: req)
    }

    /// What the patient typed, as the clinic stores it: a lower-case e-mail address, or an E.164 number.
    enum Address: Equatable {
        case email(String)
        case phone(String)

        var bucket: String {
            switch self {
            case .email(let address): "e:" + address
            case .phone(let number): "p:" + number
            }
        }

        static func parse(_ raw: String, text: PatientText) throws -> Address {
            let typed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !typed.isEmpty else { throw InvalidInput(path: "address", problem: text("signIn.error.empty")) }
            guard typed.count <= 254 else { throw InvalidInput(path: "address", problem: text("signIn.error.long")) }
            if typed.contains("@") {
                let address = typed.lowercased()
                guard MailMessage.isDeliverable(address) else { throw InvalidInput(path: "address", problem: text("signIn.error.email")) }
                return .email(address)
            }
            var number = typed.filter { !" -().\u{00A0}".contains($0) }
            if number.hasPrefix("00") { number = "+" + number.dropFirst(2) }
            guard PhoneNumber.isE164(number) else { throw InvalidInput(path: "address", problem: text("signIn.error.phone")) }
            return .phone(number)
        }
    }

    struct SignInForm: Content {
        var address: String?
        var clinic: String?
    }

    func request(req: Request) async throws -> Response {
        let clinic = try await Self.clinic(req)
        let clinicID = try clinic.requireID()
        let text = req.dermis.patientText
        let now = req.dermis.clock.now()
        let typed = (try? req.content.decode(SignInForm.self))?.address ?? ""
        if try await RateLimits.exceeded("portal-ask:\(req.clientAddress)", limit: PortalSessions.requestsPerClientPerHour, window: 3600,
                                         now: now, on: req.db) {
            try await req.audit(.create, objectType: "PortalSignInLink", outcome: .denied)
            return try await render(req, clinic: clinic, address: typed, sent: false, notice: nil,
                                    errors: [ErrorLine(field: "address", message: text("signIn.error.tooMany"))], status: .tooManyRequests)
        }
        let address: Address
        do {
            address = try Address.parse(typed, text: text)
        } catch let invalid as InvalidInput {
            return try await render(req, clinic: clinic, address: typed, sent: false, notice: nil, errors: ErrorLine.list(invalid),
                                    status: .unprocessableEntity)
        }
        // Per address whether or not it is known, so the limit itself tells nothing; the answer is the same page.
        let addressBucket = "portal-address:" + Secrets.digest(address.bucket)
        if try await RateLimits.exceeded(addressBucket, limit: PortalSessions.linksPerAddressPerHour, window: 3600, now: now, on: req.db) {
            try await req.audit(.create, objectType: "PortalSignInLink", outcome: .denied)
            return try await render(req, clinic: clinic, address: "", sent: true, notice: text("signIn.sentAgain"), errors: [], status: .ok)
        }
        for patient in try await patients(matching: address, clinicID: clinicID, on: req.db) {
            let patientID = try patient.requireID()
            // Per patient too: several addresses or devices asking for one patient's links are limited together.
            if try await RateLimits.exceeded("portal-patient:\(patientID)", limit: PortalSessions.linksPerPatientPerDay, window: 86_400,
                                             now: now, on: req.db) {
                try await req.audit(.create, objectType: "PortalSignInLink", patientID: patientID, outcome: .denied)
                continue
            }
            try await req.audited(.create, objectType: "PortalSignInLink", patientID: patientID) {
                try await send(req, to: patient, by: address, clinic: clinic, at: now)
            }
        }
        return try await render(req, clinic: clinic, address: "", sent: true, notice: nil, errors: [], status: .ok)
    }

    /// Patients of the clinic with that address (a family may share one: each gets their own link), not archived.
    private func patients(matching address: Address, clinicID: UUID, on db: any Database) async throws -> [Patient] {
        let query = Patient.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$archived == false)
        switch address {
        case .phone(let number):
            return try await query.filter(\.$phoneE164 == number).limit(5).all()
        case .email(let email):
            // Addresses are stored as typed: compared without case.
            return try await query.filter(.sql(unsafeRaw: "lower(email)"), .equal, .bind(email)).limit(5).all()
        }
    }

    /// A new link, and its message to the address the patient typed (by e-mail, or a text unless they sent STOP).
    private func send(_ req: Request, to patient: Patient, by address: Address, clinic: Clinic, at now: Date) async throws {
        let patientID = try patient.requireID()
        let route: MessageRoute
        switch address {
        case .email(let email): route = .email(email)
        case .phone(let number):
            if let preference = try await MessagePreference.find(patientID, on: req.db), preference.smsStoppedAt != nil { return }
            route = .sms(number)
        }
        let token = Secrets.token()
        let link = PortalSignInLink(patientID: patientID, tokenHash: Secrets.digest(token), channel: route.channel.rawValue, at: now,
                                    lifetime: PortalSessions.linkLifetime)
        try await link.create(on: req.db)
        let values = ["name": patient.givenName, "clinic": clinic.name, "link": Self.linkBase(req) + "/my/link/\(token)",
                      "minutes": "\(Int(PortalSessions.linkLifetime / 60))"]
        try await RenderedMessage.render(.portalSignIn, values, clinic: try clinic.requireID(), on: req.db)
            .queue(by: route, clinic: try clinic.requireID(), patient: patientID, at: now, on: req.db)
    }

    /// Where the link points: `DERMIS_PUBLIC_URL`, else the address this server listens on — never the request's Host
    /// header, which whoever asks for a link could set to their own site and so receive the victim's token.
    static func linkBase(_ req: Request) -> String {
        if let base = req.dermis.settings.publicURL { return base }
        let server = req.application.http.server.configuration
        let scheme = server.tlsConfiguration == nil ? "http" : "https"
        let host = ["0.0.0.0", "::"].contains(server.hostname) ? "localhost" : server.hostname
        return "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(server.port)"
    }

    // MARK: The link

    struct LinkPage: Encodable {
        let my: MyPage
        let token: String
        let valid: Bool
        let message: String
        /// Whose sign-in this is ("Mina R."), so a forwarded link is not pressed unawares; and a warning when another
        /// patient is signed in on this device.
        let who: String?
        let otherSignedIn: Bool
    }

    /// The link's state: usable, or why not, with the status to answer.
    private func inspect(_ req: Request) async throws -> (PortalSignInLink?, HTTPResponseStatus, String) {
        let text = req.dermis.patientText
        let now = req.dermis.clock.now()
        if try await PatientLinks.tooManyMisses(req) { return (nil, .tooManyRequests, text("links.tooMany")) }
        let token = req.parameters.get("token") ?? ""
        guard (20...100).contains(token.count),
              let link = try await PortalSignInLink.query(on: req.db).filter(\.$tokenHash == Secrets.digest(token)).first() else {
            try await PatientLinks.recordMiss(req)
            return (nil, .notFound, text("link.unknown"))
        }
        let patient = try await Patient.find(link.$patient.id, on: req.db)
        req.auditClinicID = patient?.$clinic.id
        if link.usedAt != nil { return (link, .gone, text("link.used")) }
        if now >= link.expiresAt { return (link, .gone, text("link.expired", ["minutes": "\(Int(PortalSessions.linkLifetime / 60))"])) }
        guard let patient, !patient.archived else { return (link, .gone, text("link.unknown")) }
        return (link, .ok, "")
    }

    private func renderLink(_ req: Request, token: String, status: HTTPResponseStatus, message: String, link: PortalSignInLink? = nil) async throws -> Response {
        let clinic = try await req.clinic()
        let text = req.dermis.patientText
        var who: String?
        var other = false
        if status == .ok, let link, let patient = try await Patient.find(link.$patient.id, on: req.db) {
            who = text("link.who", ["name": "\(patient.givenName) \(patient.familyName.prefix(1))."])
            other = try await PortalSessions.principal(forCookieOf: req).map { $0.patientID != link.$patient.id } ?? false
        }
        return try await req.view.render("my-link", LinkPage(
            my: MyPage(req, clinic: clinic, title: text("link.title"), signedIn: false), token: token, valid: status == .ok,
            message: message, who: who, otherSignedIn: other)).encodeResponse(status: status, for: req)
    }

    func confirmPage(req: Request) async throws -> Response {
        let (link, status, message) = try await inspect(req)
        if status != .ok {
            try await req.audit(.access, objectType: "PortalSignInLink", patientID: link?.$patient.id, outcome: AuditOutcome(Abort(status)))
        }
        return try await renderLink(req, token: req.parameters.get("token") ?? "", status: status, message: message, link: link)
    }

    func useLink(req: Request) async throws -> Response {
        let (found, status, message) = try await inspect(req)
        guard status == .ok, let link = found else {
            try await req.audit(.signIn, objectType: "PortalSession", patientID: found?.$patient.id, outcome: AuditOutcome(Abort(status)))
            return try await renderLink(req, token: "", status: status, message: message)
        }
        let now = req.dermis.clock.now()
        let patientID = link.$patient.id
        let response = req.redirect(to: "/my", redirectType: .normal)
        do {
            try await Writes.transaction(req.db) { db in
                // Spent in the same statement that checks it is unspent: of two presses at once, one signs in.
                try await ConditionalUpdate(PortalSignInLink.self, id: try link.requireID(), on: db)
                    .whereNull(\.$usedAt).where(\.$expiresAt, .greaterThan, now)
                    .set(\.$usedAt, to: now)
                    .run(orThrow: Abort(.gone))
                let session = try await PortalSessions.start(patientID: patientID, on: req, response: response, in: db)
                req.portal = PortalPrincipal(patientID: patientID, clinicID: req.auditClinicID ?? UUID(), sessionID: try session.requireID())
                try await req.audit(.signIn, objectType: "PortalSession", objectID: session.id?.uuidString, patientID: patientID, outcome: .success)
            }
        } catch let abort as Abort where abort.status == .gone {
            req.portal = nil
            try await req.audit(.signIn, objectType: "PortalSession", patientID: patientID, outcome: .denied)
            return try await renderLink(req, token: "", status: .gone, message: req.dermis.patientText("link.used"))
        }
        return response
    }

    // MARK: Ending sessions

    func signOut(req: Request) async throws -> Response {
        let portal = try req.portalPatient()
        try await req.audited(.update, objectType: "PortalSession", objectID: portal.sessionID.uuidString, patientID: portal.patientID) {
            try await PortalSessions.end(session: portal.sessionID, of: portal.patientID, at: req.dermis.clock.now(), on: req.db)
        }
        let response = req.redirect(to: "/my/sign-in?signedOut=1", redirectType: .normal)
        PortalSessions.setCookie("", on: response, request: req, expire: true)
        return response
    }

    func signOutEverywhere(req: Request) async throws -> Response {
        let portal = try req.portalPatient()
        try await req.audited(.update, objectType: "PortalSession", patientID: portal.patientID) {
            try await PortalSessions.endAll(patientID: portal.patientID, by: nil, at: req.dermis.clock.now(), on: req.db)
        }
        let response = req.redirect(to: "/my/sign-in?signedOut=1", redirectType: .normal)
        PortalSessions.setCookie("", on: response, request: req, expire: true)
        return response
    }

    func staffEnd(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let patientID = try patient.requireID()
        try await req.audited(.update, objectType: "PortalSession", patientID: patientID) {
            try await PortalSessions.endAll(patientID: patientID, by: staff.userID, at: req.dermis.clock.now(), on: req.db)
        }
        return req.redirect(to: "/patients/\(patientID)", redirectType: .normal)
    }
}

/// What every patient page's frame needs: the clinic, the page's title, whether the patient is signed in, and the
/// catalogue's sentences (`t`), which the templates read as `#(my.t.signIn_title)` for the key `signIn.title`.
struct MyPage: Encodable {
    let clinicName: String
    let title: String
    let signedIn: Bool
    let t: [String: String]

    init(_ req: Request, clinic: Clinic?, title: String, signedIn: Bool) {
        self.clinicName = clinic?.name ?? req.dermis.patientText("clinic.fallback")
        self.title = title
        self.signedIn = signedIn
        self.t = req.dermis.patientText.templateKeys
    }
}
