import DermisCore
import Fluent
import Foundation
import Vapor

/// Online booking with no account: choose a location, a service (or zones), a free time; give a name, a contact and
/// answer the short pre-screen. A patient it would defer is told kindly why and from when they can book, with the
/// clinic's number. Otherwise the time is held (pending) until the patient opens the confirmation link sent to them.
/// Rate-limited per address; every booking audited.
struct PublicBookingController: RouteCollection {
    /// Booking attempts an address may make in an hour, and pages it may load.
    static let bookingsPerAddressPerHour = 10
    static let pagesPerAddressPerHour = 300

    func boot(routes: any RoutesBuilder) throws {
        routes.get("book", use: page).access(.open)
        routes.post("book", use: book).access(.open)
        routes.get("book", "confirm", ":token", use: confirmPage).access(.open)
        routes.post("book", "confirm", ":token", use: confirm).access(.open)
        routes.post("book", "confirm", ":token", "deposit", use: payDeposit).access(.open)
        routes.get("book", "confirm", ":token", "calendar.ics", use: ics).access(.open)
    }

    private func limited(_ req: Request, _ kind: String, _ limit: Int) async throws -> Bool {
        try await RateLimits.exceeded("\(kind):\(req.clientAddress)", limit: limit, window: 3600, now: req.dermis.clock.now(), on: req.db)
    }

    /// The clinic being booked with (`?clinic=` when the database holds several).
    private func clinic(_ req: Request) async throws -> Clinic {
        try await req.publicClinic(several: "Online booking is not set up, or this server books for several clinics: use the link your clinic gave you.")
    }

    /// The clinic an appointment belongs to, for its confirmation pages.
    private func clinic(of appointment: Appointment, _ req: Request) async throws -> Clinic {
        req.auditClinicID = appointment.$clinic.id
        return try await Clinic.require(appointment.$clinic.id, on: req.db)
    }

    struct Query: Content {
        var location: String?
        var service: String?
        var zones: [String]?
        var date: String?
    }

    struct TimeOption: Encodable {
        let start: String
        let label: String
    }

    struct BookPage: Encodable {
        let clinicID: String
        let clinicName: String
        let clinicPhone: String
        let locations: [Option]
        let services: [Option]
        let zones: [Option]
        let date: String
        let treatment: Bool
        let times: [TimeOption]
        let searched: Bool
        let locationID: String
        let serviceCode: String
        let zonesText: String
        let errors: [ErrorLine]
        let form: FormEcho
    }

    /// What the patient typed, shown again after a refusal so nothing is lost.
    struct FormEcho: Encodable {
        var name = ""
        var email = ""
        var phone = ""
        var start = ""
    }

    func page(req: Request) async throws -> Response {
        if try await limited(req, "public-page", Self.pagesPerAddressPerHour) {
            throw Abort(.tooManyRequests, reason: "Too many requests from this address; please try again in an hour or call the clinic.")
        }
        return try await render(req, status: .ok, query: try req.query.decode(Query.self), errors: [], form: FormEcho())
    }

    private func render(_ req: Request, status: HTTPResponseStatus, query q: Query, errors: [ErrorLine], form: FormEcho) async throws -> Response {
        let clinic = try await clinic(req)
        let scheduling = SchedulingService(req: req, clinicID: try clinic.requireID())
        let locations = try await scheduling.locations()
        let services = try await scheduling.services(publicOnly: true)
        let location = locations.first { $0.id?.uuidString == q.location } ?? (locations.count == 1 ? locations.first : nil)
        let service = services.first { $0.code == q.service }
        let zones = q.zones ?? []
        let zone = location?.zone ?? clinic.zone
        let today = CalendarDate(req.dermis.clock.now(), in: zone)
        let from = max(q.date.flatMap(CalendarDate.init(iso:)) ?? today, today)
        var times: [TimeOption] = []
        var problems = errors
        let searched = location != nil && service != nil
        if let location, let service {
            do {
                var seen = Set<Date>()
                let found = try await scheduling.availability(.init(location: location, service: service, zones: zones, from: from, to: from.adding(days: 13)))
                times = found.slots.filter { seen.insert($0.start).inserted }.prefix(80).map {
                    TimeOption(start: $0.start.formatted(.iso8601), label: LocalTime.words($0.start, in: zone))
                }
            } catch let invalid as InvalidInput {
                problems += ErrorLine.list(invalid)
            }
        }
        let p = req.dermis.clinicalProtocol
        let page = BookPage(
            clinicID: try clinic.requireID().uuidString, clinicName: clinic.name, clinicPhone: location?.phone ?? locations.first?.phone ?? "",
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == location?.id) },
            services: services.map { Option(id: $0.code, name: $0.name, selected: $0.id == service?.id) },
            zones: p.zones.filter { $0.region == "face" || zones.contains($0.id) }.map { Option(id: $0.id, name: $0.displayName, selected: zones.contains($0.id)) },
            date: from.description, treatment: service?.isTreatment ?? false, times: times, searched: searched,
            locationID: location?.id?.uuidString ?? "", serviceCode: service?.code ?? "", zonesText: zones.joined(separator: ","),
            errors: problems, form: form)
        return try await req.view.render("book", page).response(status, for: req)
    }

    struct BookForm: Content {
        var location: String?
        var service: String?
        var zones: String?
        var start: String?
        var name: String?
        var email: String?
        var phone: String?
        var pregnant: String?
        var isotretinoin: String?
        var isotretinoinLastDose: String?
        var skinCancer: String?
        var infection: String?
        var fillerOn: String?
        var toxinOn: String?
        var consentToContact: String?
    }

    /// The answers as a pre-screen, each unanswerable field named.
    static func preScreen(_ form: BookForm) throws -> PreScreen {
        var issues: [FieldIssue] = []
        func yesNo(_ value: String?, _ field: String) -> Bool {
            switch value {
            case "yes": return true
            case "no": return false
            default:
                issues.append(FieldIssue(path: field, problem: "answer yes or no"))
                return false
            }
        }
        func date(_ value: String?, _ field: String) -> CalendarDate? {
            guard let value, !value.isEmpty else { return nil }
            guard let date = CalendarDate(iso: value) else { issues.append(FieldIssue(path: field, problem: "must be a date YYYY-MM-DD")); return nil }
            return date
        }
        var screen = PreScreen(pregnant: yesNo(form.pregnant, "pregnant"), skinCancerInArea: yesNo(form.skinCancer, "skinCancer"),
                               infectionInArea: yesNo(form.infection, "infection"), fillerOn: date(form.fillerOn, "fillerOn"), toxinOn: date(form.toxinOn, "toxinOn"))
        switch form.isotretinoin {
        case "never": screen.isotretinoin = .never
        case "current": screen.isotretinoin = .current
        case "stopped":
            if let last = date(form.isotretinoinLastDose, "isotretinoinLastDose") { screen.isotretinoin = .stopped(lastDose: last) } else if form.isotretinoinLastDose?.isEmpty ?? true {
                issues.append(FieldIssue(path: "isotretinoinLastDose", problem: "give the date of the last dose"))
            }
        default: issues.append(FieldIssue(path: "isotretinoin", problem: "choose one answer"))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return screen
    }

    struct Outcome: Encodable {
        let clinicName: String
        let clinicPhone: String
        let title: String
        let held: Bool
        let when: String?
        let holdMinutes: Int
        let reasons: [String]
        let until: String?
        let notEligible: Bool
    }

    func book(req: Request) async throws -> Response {
        if try await limited(req, "public-book", Self.bookingsPerAddressPerHour) {
            throw Abort(.tooManyRequests, reason: "Too many booking attempts from this address; please try again in an hour or call the clinic.")
        }
        let clinic = try await clinic(req)
        let scheduling = SchedulingService(req: req, clinicID: try clinic.requireID())
        let form = try req.content.decode(BookForm.self)
        let zones = AppointmentAPIController.zones(form.zones)
        let query = Query(location: form.location, service: form.service, zones: zones, date: nil)
        let echo = FormEcho(name: form.name ?? "", email: form.email ?? "", phone: form.phone ?? "", start: form.start ?? "")
        do {
            var issues: [FieldIssue] = []
            let name = (form.name ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            if name.isEmpty { issues.append(FieldIssue(path: "name", problem: "give your name")) }
            if let issue = TextLimits.issue(name, "name", max: TextLimits.short) { issues.append(issue) }
            let email = (form.email ?? "").trimmingCharacters(in: .whitespaces).lowercased()
            let phoneText = (form.phone ?? "").trimmingCharacters(in: .whitespaces)
            let phone = phoneText.isEmpty ? nil : PatientDetails.e164(phoneText)
            if let issue = TextLimits.issue(email, "email", max: TextLimits.short) { issues.append(issue) }
            if !email.isEmpty && !PatientDetails.isPlausibleEmail(email) { issues.append(FieldIssue(path: "email", problem: "'\(email)' is not an email address")) }
            if !phoneText.isEmpty && phone == nil { issues.append(FieldIssue(path: "phone", problem: "must be an international number with its country code, e.g. +44 7700 900123")) }
            if email.isEmpty { issues.append(FieldIssue(path: "email", problem: "the confirmation link is sent by email: give an email address")) }
            if form.consentToContact != "on" { issues.append(FieldIssue(path: "consentToContact", problem: "tick to let the clinic contact you about this booking")) }
            let start = form.start.flatMap { try? Date($0, strategy: .iso8601) }
            if start == nil { issues.append(FieldIssue(path: "start", problem: "choose a time")) }
            var screen: PreScreen?
            do { screen = try Self.preScreen(form) } catch let invalid as InvalidInput { issues += invalid.issues }
            if !issues.isEmpty { throw InvalidInput(issues) }
            let location = try await scheduling.location(form.location.flatMap(UUID.init(uuidString:)))
            let service = try await scheduling.service(form.service)
            guard service.isPublic else { throw InvalidInput(path: "service", problem: "is not offered online") }
            // The pre-screen first: a patient it would defer is not booked, and is told why and until when.
            let result = try screen!.screen(zones: zones, on: CalendarDate(req.dermis.clock.now(), in: location.zone), protocol: req.dermis.clinicalProtocol)
            if result.outcome == .deferred || result.outcome == .notEligible {
                try await req.audit(.create, objectType: "PublicBooking", outcome: .denied)
                return try await req.view.render("book-outcome", Outcome(
                    clinicName: clinic.name, clinicPhone: location.phone, title: "We can't book this online yet", held: false, when: nil,
                    holdMinutes: 0, reasons: result.reasons.map(\.message), until: result.until?.description,
                    notEligible: result.outcome == .notEligible)).response(.ok, for: req)
            }
            let token = Secrets.token()
            let booking = SchedulingService.Booking(
                location: location, service: service, zones: service.isTreatment ? zones : [], start: start!, practitionerID: nil, patientID: nil,
                contactName: name, contactEmail: email, contactPhone: phone ?? "",
                notes: "Booked online; pre-screen clear on \(CalendarDate(req.dermis.clock.now(), in: location.zone)).", source: "public",
                status: .pending, overrideReason: nil, seriesID: nil)
            // The hold and the message that confirms it are one unit of work: never a hold nobody is told about.
            let appointment = try await req.audited(.create, objectType: "Appointment") {
                let appointment = try await scheduling.book(booking, by: nil, confirmTokenHash: Secrets.digest(token))
                // Online, before there is a record: to the address the booker gave, which the link proves.
                var values = AppointmentNotices.values(appointment, location: location, service: service, clinic: clinic)
                values["link"] = FollowUpController.absoluteURL(req, "/book/confirm/\(token)")
                values["minutes"] = "\(SchedulingService.holdMinutes)"
                try await RenderedMessage.render(.bookingConfirm, values, clinic: try clinic.requireID(), on: req.db)
                    .queue(by: .email(email), clinic: try clinic.requireID(), patient: nil, at: req.dermis.clock.now(), about: appointment.id, on: req.db)
                return appointment
            }
            return try await req.view.render("book-outcome", Outcome(
                clinicName: clinic.name, clinicPhone: location.phone, title: "Your time is held", held: true,
                when: LocalTime.words(appointment.startsAt, in: location.zone), holdMinutes: SchedulingService.holdMinutes,
                reasons: [], until: nil, notEligible: false)).response(.created, for: req)
        } catch let invalid as InvalidInput {
            return try await render(req, status: .unprocessableEntity, query: query, errors: ErrorLine.list(invalid), form: echo)
        } catch is SchedulingService.Conflict {
            return try await render(req, status: .conflict, query: query,
                                    errors: [ErrorLine(field: "start", message: "That time was just taken — please choose another.")], form: echo)
        }
    }

    private func pending(_ req: Request) async throws -> Appointment {
        let token = req.parameters.get("token") ?? ""
        guard (20...100).contains(token.count),
              let appointment = try await Appointment.query(on: req.db).filter(\.$confirmTokenHash == Secrets.digest(token)).first() else {
            _ = try await limited(req, "public-book", Self.bookingsPerAddressPerHour)
            throw Abort(.notFound, reason: "This confirmation link is not known. Please book again or call the clinic.")
        }
        return appointment
    }

    struct ConfirmPage: Encodable {
        let clinicName: String
        let clinicPhone: String
        let when: String
        let status: String
        let token: String
        let expired: Bool
        /// The clinic's deposit policy, in words, when this booking needs one; and where its deposit is.
        let depositPolicy: String?
        let depositAmount: String?
        let depositStatus: String?
        let depositOutcome: String?
        /// Back from the provider's checkout, before it has told Dermis the payment went through.
        let awaitingPayment: Bool
        let problem: String?
    }

    func confirmPage(req: Request) async throws -> Response {
        let appointment = try await pending(req)
        let clinic = try await clinic(of: appointment, req)
        // Back from the checkout: ask the provider now rather than wait for its webhook.
        if (try? req.query.get(String.self, at: "paid")) == "1", appointment.appointmentStatus == .pending,
           let provider = req.application.payments {
            let deposits = deposits(req, clinic: try clinic.requireID())
            if let deposit = try await deposits.deposit(of: appointment), let checkoutID = deposit.checkoutID,
               deposit.depositStatus == .awaitingPayment, let session = try? await provider.checkout(checkoutID), session.isPaid {
                do {
                    try await req.audited(.update, objectType: "Deposit", objectID: deposit.id?.uuidString) {
                        _ = try await deposits.paid(session, req: req)
                    }
                } catch DomainError.conflict {
                    // The provider's webhook recorded the same payment a moment before: the page shows what it did.
                }
                return try await renderConfirm(req, try await pending(req), status: .ok)
            }
            return try await renderConfirm(req, appointment, status: .ok, awaitingPayment: true)
        }
        return try await renderConfirm(req, appointment, status: .ok)
    }

    private func deposits(_ req: Request, clinic: UUID) -> Deposits {
        Deposits(db: req.db, clinicID: clinic, provider: req.application.payments, now: req.dermis.clock.now())
    }

    private func renderConfirm(_ req: Request, _ appointment: Appointment, status: HTTPResponseStatus, awaitingPayment: Bool = false,
                               problem: String? = nil) async throws -> Response {
        let clinic = try await clinic(of: appointment, req)
        let location = try await Location.require(appointment.$location.id, on: req.db)
        let expired = appointment.appointmentStatus == .expired
            || (appointment.appointmentStatus == .pending && (appointment.holdExpiresAt ?? .distantPast) <= req.dermis.clock.now())
        let deposits = deposits(req, clinic: try clinic.requireID())
        let policy = try await deposits.required(for: appointment)
        let deposit = try await deposits.deposit(of: appointment)
        return try await req.view.render("book-confirm", ConfirmPage(
            clinicName: clinic.name, clinicPhone: location.phone, when: LocalTime.words(appointment.startsAt, in: location.zone),
            status: expired ? "expired" : appointment.status, token: req.parameters.get("token") ?? "", expired: expired,
            depositPolicy: policy?.words, depositAmount: policy?.amountText, depositStatus: deposit?.status, depositOutcome: deposit?.outcome,
            awaitingPayment: awaitingPayment, problem: problem)).response(status, for: req)
    }

    func confirm(req: Request) async throws -> Response {
        let appointment = try await pending(req)
        let clinic = try await clinic(of: appointment, req)
        // A clinic that takes deposits confirms an online booking when its deposit is paid, not by this button.
        if appointment.appointmentStatus == .pending, try await deposits(req, clinic: try clinic.requireID()).required(for: appointment) != nil {
            return try await renderConfirm(req, appointment, status: .conflict, problem: "This booking is confirmed by paying its deposit.")
        }
        do {
            let confirmed = try await req.audited(.update, objectType: "Appointment", objectID: appointment.id?.uuidString) {
                try await SchedulingService(req: req, clinicID: try clinic.requireID()).setStatus(appointment, to: .booked, expectedVersion: appointment.version)
            }
            return try await renderConfirm(req, confirmed, status: .ok)
        } catch let abort as any AbortError where [.conflict, .gone].contains(abort.status) {
            return try await renderConfirm(req, try await pending(req), status: abort.status)
        }
    }

    struct PayPage: Encodable {
        let clinicName: String
        let amount: String
        let url: String
        let token: String
    }

    /// Sends the patient to the provider's checkout for this held booking's deposit (the policy was on the page).
    func payDeposit(req: Request) async throws -> Response {
        let appointment = try await pending(req)
        let clinic = try await clinic(of: appointment, req)
        let deposits = deposits(req, clinic: try clinic.requireID())
        let token = req.parameters.get("token") ?? ""
        let lapsed = appointment.appointmentStatus != .pending || (appointment.holdExpiresAt ?? .distantPast) <= req.dermis.clock.now()
        guard !lapsed, let policy = try await deposits.required(for: appointment) else {
            return try await renderConfirm(req, appointment, status: .conflict, problem: lapsed ? nil : "This booking needs no deposit.")
        }
        let service = try await Service.require(appointment.$service.id, on: req.db)
        // A time booked on the patient's own pages returns there (by the appointment, which a fresh link never changes).
        let returnURL = PortalSignInController.linkBase(req)
            + (appointment.source == RecordSource.patientPortal ? "/my/appointments/\(try appointment.requireID())/deposit/paid" : "/book/confirm/\(token)")
        do {
            // No unit of work around it: the provider is asked over the network, and nothing may wait on that.
            let url = try await deposits.checkout(for: appointment, policy: policy, returnURL: returnURL,
                                                  description: "Deposit: \(clinic.name), \(service.name)", req: req)
            try await req.audit(.create, objectType: "Deposit", objectID: appointment.id?.uuidString, outcome: .success)
            guard let url else { return req.redirect(to: "/book/confirm/\(token)", redirectType: .normal) }
            // A link, not a redirect: the pages' policy lets forms post only to Dermis itself (form-action 'self'),
            // which a browser applies to a form's redirects too.
            return try await req.view.render("book-pay", PayPage(clinicName: clinic.name, amount: policy.amountText, url: url,
                                                                 token: token)).encodeResponse(for: req)
        } catch let error as PaymentError {
            req.logger.warning("A deposit checkout could not be made: \(error.message)")
            return try await renderConfirm(req, appointment, status: .badGateway,
                                           problem: "The payment page could not be opened just now. Please try again in a minute, or call the clinic.")
        }
    }

    func ics(req: Request) async throws -> Response {
        let appointment = try await pending(req)
        guard appointment.appointmentStatus == .booked else { throw Abort(.conflict, reason: "Confirm the booking first.") }
        return try await CalendarController.icsResponse(appointment, req)
    }
}
