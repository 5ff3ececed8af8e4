import DermisCore
import Fluent
import Foundation
import Vapor

/// The waitlist: the front desk adds a patient who wants an earlier time and sees, per day, who is waiting and which
/// offers are out; a patient answers an offer by its personal link (`/waitlist/offer/:token`, no account), and the
/// first to take a time gets it. Offers are made when a booked time is cancelled (`SchedulingService.offerFreedTime`).
struct WaitlistController: RouteCollection {
    static let linkMissesPerAddressPerHour = 20

    func boot(routes: any RoutesBuilder) throws {
        let staff = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        routes.get("waitlist", use: page).access(staff)
        routes.post("waitlist", use: add).access(staff)
        routes.post("waitlist", ":entryID", "withdraw", use: withdraw).access(staff)
        routes.get("waitlist", "offer", ":token", use: offerPage).access(.open)
        routes.post("waitlist", "offer", ":token", use: take).access(.open)
    }

    struct EntryRow: Encodable {
        let id: String
        let patient: String
        let patientLink: String
        let service: String
        let zones: String
        let days: String
        let practitioner: String
        let asked: String
        let source: String
        /// The later booking an earlier time would replace.
        let replaces: String
    }

    struct OfferRow: Encodable {
        let patient: String
        let when: String
        let status: String
        let sent: String
    }

    struct Page: Encodable {
        let page: PageHeader
        let date: String
        let entries: [EntryRow]
        let offers: [OfferRow]
        let answered: [OfferRow]
        let locations: [Option]
        let services: [Option]
        let zones: [Option]
        let practitioners: [Option]
        let patients: [Option]
        let form: [String: String]
        let errors: [ErrorLine]
        let added: Bool
    }

    private func render(_ req: Request, form: [String: String], errors: [ErrorLine], status: HTTPStatus = .ok) async throws -> Response {
        let staff = try req.staff()
        let scheduling = SchedulingService(req: req, clinicID: staff.clinicID)
        let locations = try await scheduling.locations()
        let zone = locations.first?.zone ?? TimeZone.gmt
        let date = (try? req.query.get(String.self, at: "date")).flatMap(CalendarDate.init(iso:))
        return try await req.audited(.search, objectType: "Patient") {
            var query = WaitlistEntry.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$status == "waiting")
            if let date { query = query.filter(\.$earliest <= date.description).filter(\.$latest >= date.description) }
            let entries = try await query.sort(\.$createdAt).limit(200).all()
            let replaced = try await Appointment.query(on: req.db).filter(\.$id ~~ Set(entries.compactMap(\.replacesID))).all()
            let offers = try await WaitlistOffer.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$createdAt, .descending).limit(100).all()
            let offerEntries = try await WaitlistEntry.query(on: req.db).filter(\.$id ~~ Set(offers.map { $0.$entry.id })).all()
            let patientIDs = Set(entries.map { $0.$patient.id } + offerEntries.map { $0.$patient.id })
            let patients = Dictionary(uniqueKeysWithValues: try await Patient.query(on: req.db).filter(\.$id ~~ patientIDs).all().map { ($0.id!, $0) })
            let services = try await scheduling.services()
            let serviceNames = Dictionary(uniqueKeysWithValues: services.map { ($0.id!, $0.name) })
            let staffNames = Dictionary(uniqueKeysWithValues: try await StaffUser.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all().map { ($0.id!, $0.name) })
            let p = req.dermis.clinicalProtocol
            let zoneNames = Dictionary(uniqueKeysWithValues: p.zones.map { ($0.id, $0.displayName) })
            func name(_ id: UUID) -> String { patients[id].map { "\($0.fullName) (\($0.mrn))" } ?? "—" }
            func offerRow(_ offer: WaitlistOffer) -> OfferRow {
                OfferRow(patient: offerEntries.first { $0.id == offer.$entry.id }.map { name($0.$patient.id) } ?? "—",
                         when: LocalTime.words(offer.startsAt, in: zone), status: offer.status, sent: LocalTime.words(offer.createdAt, in: zone))
            }
            let registry = try await Patient.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$archived == false)
                .sort(\.$familyName).limit(500).all()
            return try await req.view.render("waitlist", Page(
                page: try await PageHeader(req, title: "Waitlist"), date: date?.description ?? "",
                entries: entries.map { e in
                    EntryRow(id: e.id!.uuidString, patient: name(e.$patient.id), patientLink: "/patients/\(e.$patient.id)",
                             service: serviceNames[e.$service.id] ?? "", zones: e.zoneList.map { zoneNames[$0] ?? $0 }.joined(separator: ", "),
                             days: e.earliest == e.latest ? e.earliest : "\(e.earliest) to \(e.latest)",
                             practitioner: e.practitionerID.flatMap { staffNames[$0] } ?? "anyone", asked: LocalTime.words(e.createdAt, in: zone),
                             source: e.source == RecordSource.patientPortal ? "the patient, online" : "the front desk",
                             replaces: e.replacesID.flatMap { id in replaced.first { $0.id == id } }.map { "instead of \(LocalTime.words($0.startsAt, in: zone))" } ?? "")
                },
                offers: offers.filter { $0.status == "offered" }.map(offerRow),
                answered: offers.filter { $0.status != "offered" }.prefix(20).map(offerRow),
                locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id?.uuidString == form["location"]) },
                services: services.map { Option(id: $0.code, name: $0.name, selected: $0.code == form["service"]) },
                zones: p.zones.map { Option(id: $0.id, name: $0.displayName, selected: (form["zones"] ?? "").split(separator: ",").contains(Substring($0.id))) },
                practitioners: [Option(id: "", name: "Anyone", selected: true)]
                    + staffNames.sorted { $0.value < $1.value }.map { Option(id: $0.key.uuidString, name: $0.value, selected: $0.key.uuidString == form["practitioner"]) },
                patients: registry.map { Option(id: $0.id!.uuidString, name: "\($0.familyName), \($0.givenName) (\($0.mrn))", selected: $0.id?.uuidString == form["patient"]) },
                form: form, errors: errors, added: (try? req.query.get(String.self, at: "added")) == "1")).response(status, for: req)
        }
    }

    func page(req: Request) async throws -> Response {
        try await render(req, form: ["patient": (try? req.query.get(String.self, at: "patient")) ?? ""], errors: [])
    }

    struct AddForm: Content {
        var patient: String?
        var location: String?
        var service: String?
        var zones: [String]?
        var earliest: String?
        var latest: String?
        var practitioner: String?
    }

    func add(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(AddForm.self)
        let echo = ["patient": form.patient ?? "", "location": form.location ?? "", "service": form.service ?? "",
                    "zones": (form.zones ?? []).joined(separator: ","), "earliest": form.earliest ?? "", "latest": form.latest ?? "",
                    "practitioner": form.practitioner ?? ""]
        do {
            guard let id = form.patient.flatMap(UUID.init(uuidString:)) else { throw InvalidInput(path: "patient", problem: "choose the patient") }
            let patient: Patient
            do { patient = try await PatientRegistry(db: req.db, clinicID: staff.clinicID).find(id) } catch {
                throw InvalidInput(path: "patient", problem: "choose the patient")
            }
            _ = try await req.audited(.create, objectType: "WaitlistEntry", patientID: id) {
                try await SchedulingService(req: req, clinicID: staff.clinicID).addToWaitlist(
                    patient: patient, locationID: form.location.flatMap(UUID.init(uuidString:)), serviceCode: form.service, zones: form.zones ?? [],
                    earliest: form.earliest, latest: form.latest, practitionerID: form.practitioner, source: "staff", by: staff.userID)
            }
        } catch let invalid as InvalidInput {
            return try await render(req, form: echo, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await render(req, form: echo, errors: [ErrorLine(field: "service", message: abort.reason)], status: .conflict)
        }
        return req.redirect(to: "/waitlist?added=1", redirectType: .normal)
    }

    func withdraw(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("entryID", notFound: "No such waitlist entry.")
        guard let entry = try await WaitlistEntry.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
            throw Abort(.notFound, reason: "No such waitlist entry.")
        }
        try await req.audited(.update, objectType: "WaitlistEntry", objectID: id.uuidString, patientID: entry.$patient.id) {
            try await ConditionalUpdate(WaitlistEntry.self, id: id, on: req.db).where(\.$status, .equal, "waiting")
                .set(\.$status, to: "withdrawn").set(\.$updatedAt, to: req.dermis.clock.now())
                .run(orThrow: DomainError.conflict("This entry is no longer waiting."))
        }
        return req.redirect(to: "/waitlist", redirectType: .normal)
    }

    // MARK: The patient's link

    struct OfferPage: Encodable {
        let clinicName: String
        let clinicPhone: String
        let service: String
        let when: String
        let location: String
        let token: String
        /// `open`, `booked` (this patient took it), or `gone`.
        let state: String
        let message: String?
    }

    private func offer(_ req: Request) async throws -> WaitlistOffer {
        let token = req.parameters.get("token") ?? ""
        guard (20...100).contains(token.count),
              let offer = try await WaitlistOffer.query(on: req.db).filter(\.$tokenHash == Secrets.digest(token)).first() else {
            if try await RateLimits.exceeded("waitlist-link:\(req.clientAddress)", limit: Self.linkMissesPerAddressPerHour, window: 3600,
                                             now: req.dermis.clock.now(), on: req.db) {
                throw Abort(.tooManyRequests, reason: "Too many unknown links from this address; please call the clinic.")
            }
            throw Abort(.notFound, reason: "This link is not known. Please call the clinic.")
        }
        req.auditClinicID = offer.$clinic.id
        return offer
    }

    private func renderOffer(_ req: Request, _ offer: WaitlistOffer, status: HTTPStatus, message: String? = nil) async throws -> Response {
        let entry = try await WaitlistEntry.require(offer.$entry.id, on: req.db)
        let clinic = try await Clinic.require(offer.$clinic.id, on: req.db)
        let location = try await Location.require(entry.$location.id, on: req.db)
        let service = try await Service.require(entry.$service.id, on: req.db)
        let state = offer.status == "taken" ? "booked"
            : (offer.status == "offered" && entry.status == "waiting" && offer.startsAt > req.dermis.clock.now() ? "open" : "gone")
        return try await req.view.render("waitlist-offer", OfferPage(
            clinicName: clinic.name, clinicPhone: location.phone.isEmpty ? "the clinic" : location.phone, service: service.name,
            when: LocalTime.words(offer.startsAt, in: location.zone), location: location.name, token: req.parameters.get("token") ?? "",
            state: state, message: message)).response(status, for: req)
    }

    func offerPage(req: Request) async throws -> Response {
        let offer = try await offer(req)
        let entry = try await WaitlistEntry.require(offer.$entry.id, on: req.db)
        return try await req.audited(.read, objectType: "WaitlistOffer", objectID: offer.id?.uuidString, patientID: entry.$patient.id) {
            try await renderOffer(req, offer, status: .ok)
        }
    }

    func take(req: Request) async throws -> Response {
        let offer = try await offer(req)
        let entry = try await WaitlistEntry.require(offer.$entry.id, on: req.db)
        let outcome: SchedulingService.TakeOutcome
        do {
            outcome = try await req.audited(.update, objectType: "WaitlistOffer", objectID: offer.id?.uuidString, patientID: entry.$patient.id) {
                try await SchedulingService(req: req, clinicID: offer.$clinic.id).take(offer)
            }
        } catch let abort as any AbortError where abort.status == .conflict {
            // Two presses of one link at once: the other press answered it.
            outcome = .gone(abort.reason)
        }
        let fresh = try await WaitlistOffer.require(try offer.requireID(), on: req.db)
        switch outcome {
        case .booked: return try await renderOffer(req, fresh, status: .ok)
        case .gone(let why): return try await renderOffer(req, fresh, status: .conflict, message: why)
        }
    }
}
