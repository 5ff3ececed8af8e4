import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A patient asking for an earlier time: a service (and zones, for a treatment) at a location, between two days, with a
/// practitioner or anyone. Added by the front desk or by the patient on their own pages; served in the order asked.
final class WaitlistEntry: Model, @unchecked Sendable {
    static let schema = "waitlist_entry"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "patient_id") var patient: Patient
    @Parent(key: "location_id") var location: Location
    @Parent(key: "service_id") var service: Service
    @Field(key: "zones") var zones: String
    /// The days the patient can come, in the location's calendar (`YYYY-MM-DD`, both included).
    @Field(key: "earliest") var earliest: String
    @Field(key: "latest") var latest: String
    @OptionalField(key: "practitioner_id") var practitionerID: UUID?
    /// `waiting`, `booked` (a time offered was taken) or `withdrawn`.
    @Field(key: "status") var status: String
    /// `staff` or `patient-portal`.
    @Field(key: "source") var source: String
    @OptionalField(key: "appointment_id") var appointmentID: UUID?
    /// The patient's own later booking this entry wants earlier: released when an earlier time is taken, and only times
    /// before it are offered.
    @OptionalField(key: "replaces_id") var replacesID: UUID?
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "created_by") var createdBy: UUID?
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    var zoneList: [String] { zones.split(separator: ",").map(String.init) }
    var range: ClosedRange<CalendarDate>? {
        guard let from = CalendarDate(iso: earliest), let to = CalendarDate(iso: latest), from <= to else { return nil }
        return from...to
    }
}

/// A freed time offered to one waiting patient, by a personal link. The first of those offered the time who takes it
/// gets it (under the booking guard); the others' offers are then `gone` and they are told.
final class WaitlistOffer: Model, @unchecked Sendable {
    static let schema = "waitlist_offer"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "entry_id") var entry: WaitlistEntry
    /// The cancelled booking whose time this is: all offers of one time name it.
    @Field(key: "freed_id") var freedID: UUID
    @Field(key: "starts_at") var startsAt: Date
    @Field(key: "token_hash") var tokenHash: String
    /// `offered`, `taken`, `gone` (someone else took it, or it is no longer free) or `declined`.
    @Field(key: "status") var status: String
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "answered_at") var answeredAt: Date?
    @OptionalField(key: "appointment_id") var appointmentID: UUID?

    init() {}
}

struct CreateWaitlist: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(WaitlistEntry.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("location_id", .uuid, .required, .references(Location.schema, .id))
            .field("service_id", .uuid, .required, .references(Service.schema, .id))
            .field("zones", .string, .required)
            .field("earliest", .string, .required)
            .field("latest", .string, .required)
            .field("practitioner_id", .uuid)
            .field("status", .string, .required)
            .field("source", .string, .required)
            .field("appointment_id", .uuid)
            .field("replaces_id", .uuid)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid)
            .field("updated_at", .datetime, .required)
            .create()
        try await database.schema(WaitlistOffer.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("entry_id", .uuid, .required, .references(WaitlistEntry.schema, .id))
            .field("freed_id", .uuid, .required)
            .field("starts_at", .datetime, .required)
            .field("token_hash", .string, .required)
            .field("status", .string, .required)
            .field("created_at", .datetime, .required)
            .field("answered_at", .datetime)
            .field("appointment_id", .uuid)
            .unique(on: "token_hash")
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX waitlist_entry_waiting ON \(ident: WaitlistEntry.schema) (clinic_id, status, location_id, service_id)").run()
        try await sql.raw("CREATE INDEX waitlist_offer_freed ON \(ident: WaitlistOffer.schema) (freed_id)").run()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(WaitlistOffer.schema).delete()
        try await database.schema(WaitlistEntry.schema).delete()
    }
}

extension SchedulingService {
    /// How many waiting patients one freed time is offered to at once (in the order they asked): enough that one is
    /// likely to take it soon, few enough that most who are told it is gone were not kept waiting for nothing.
    static let offersPerTime = 3
    /// How far ahead a waitlist entry may reach.
    static let waitlistDays = 120

    /// A booking was cancelled: its time, if still ahead, is offered to the patients waiting for it — the same location
    /// and service, the day inside their range, their practitioner (or anyone), the time free for their own zones and
    /// not inside their series interval — in the order they asked, up to `offersPerTime`, each by a message with a
    /// personal link. In the caller's unit of work.
    func offerFreedTime(_ freed: Appointment, base: String) async throws -> Int {
        guard freed.startsAt > now, let freedID = freed.id else { return 0 }
        let location = try await self.location(freed.$location.id)
        let service = try await Service.require(freed.$service.id, on: db)
        let day = CalendarDate(freed.startsAt, in: location.zone)
        let waiting = try await WaitlistEntry.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$status == "waiting")
            .filter(\.$location.$id == freed.$location.id).filter(\.$service.$id == freed.$service.id)
            .filter(\.$earliest <= day.description).filter(\.$latest >= day.description)
            .sort(\.$createdAt).sort(\.$id).limit(50).all()
        var offered = 0
        for entry in waiting where offered < Self.offersPerTime {
            if let wanted = entry.practitionerID, wanted != freed.practitionerID { continue }
            if entry.$patient.id == freed.$patient.id { continue }
            if let replaces = entry.replacesID {
                // Only a time earlier than the booking it would replace (still booked).
                guard let own = try await Appointment.find(replaces, on: db), own.appointmentStatus == .booked, freed.startsAt < own.startsAt else { continue }
            }
            let search = Search(location: location, service: service, zones: entry.zoneList, from: day, to: day,
                                practitionerID: entry.practitionerID, patientID: entry.$patient.id, ignoring: entry.replacesID)
            guard try await availability(search).slots.contains(where: { $0.start == freed.startsAt }) else { continue }
            guard let patient = try await Patient.find(entry.$patient.id, on: db),
                  let route = try await MessageRoute.to(patient: patient.id, email: patient.email ?? "", phone: patient.phoneE164 ?? "", on: db) else {
                continue
            }
            let token = Secrets.token()
            let offer = WaitlistOffer()
            offer.$clinic.id = clinicID
            offer.$entry.id = try entry.requireID()
            offer.freedID = freedID
            offer.startsAt = freed.startsAt
            offer.tokenHash = Secrets.digest(token)
            offer.status = "offered"
            offer.createdAt = now
            try await offer.create(on: db)
            let clinic = try await Clinic.require(clinicID, on: db)
            var values = Self.noticeValues(patient: patient, start: freed.startsAt, location: location, service: service, clinic: clinic)
            values["link"] = base + "/waitlist/offer/\(token)"
            try await RenderedMessage.render(.waitlistOffer, values, clinic: clinicID, on: db)
                .queue(by: route, clinic: clinicID, patient: patient.id, at: now, about: offer.id, on: db)
            offered += 1
        }
        return offered
    }

    static func noticeValues(patient: Patient, start: Date, location: Location, service: Service, clinic: Clinic) -> [String: String] {
        ["name": patient.givenName, "clinic": clinic.name, "service": service.name.lowercased(), "when": LocalTime.words(start, in: location.zone),
         "location": location.name, "address": location.address.isEmpty ? location.name : location.address,
         "phone": location.phone.isEmpty ? "the clinic" : location.phone]
    }

    enum TakeOutcome {
        case booked(Appointment)
        /// Someone else took it first, or it is no longer free, or the offer was answered already.
        case gone(String)
    }

    /// The patient takes the time offered: booked under the same no-double-booking guard as any booking; the entry is
    /// done and every other offer of that time is gone, its patient told. In the caller's unit of work.
    func take(_ offer: WaitlistOffer) async throws -> TakeOutcome {
        guard offer.status == "offered" else {
            return .gone(offer.status == "taken" ? "You took this time already." : "This time has gone.")
        }
        let entry = try await WaitlistEntry.require(offer.$entry.id, on: db)
        guard entry.status == "waiting" else { return .gone("You are no longer waiting for an earlier time.") }
        guard offer.startsAt > now else { return .gone("This time has passed.") }
        let patient = try await Patient.require(entry.$patient.id, on: db)
        let location = try await self.location(entry.$location.id)
        let service = try await Service.require(entry.$service.id, on: db)
        let offerID = try offer.requireID()
        // The offer is answered first, conditionally: two presses of one link book once.
        try await ConditionalUpdate(WaitlistOffer.self, id: offerID, on: db).where(\.$status, .equal, "offered")
            .set(\.$status, to: "taken").set(\.$answeredAt, to: now)
            .run(orThrow: DomainError.conflict("This offer was answered meanwhile."))
        let booking = Booking(location: location, service: service, zones: service.isTreatment ? entry.zoneList : [], start: offer.startsAt,
                              practitionerID: entry.practitionerID, patientID: patient.id, contactName: patient.fullName,
                              contactEmail: patient.email ?? "", contactPhone: patient.phoneE164 ?? "",
                              notes: "From the waitlist (asked \(CalendarDate(entry.createdAt, in: location.zone))).", source: "waitlist",
                              status: .booked, overrideReason: nil, seriesID: nil, replacing: entry.replacesID)
        let appointment: Appointment
        do {
            appointment = try await Writes.savepoint(db) { _ in try await book(booking, by: nil) }
        } catch is Conflict {
            try await ConditionalUpdate(WaitlistOffer.self, id: offerID, on: db).set(\.$status, to: "gone")
                .run(orThrow: DomainError.notFound("gone"))
            return .gone("Someone else took this time a moment before you.")
        }
        try await ConditionalUpdate(WaitlistOffer.self, id: offerID, on: db).set(\.$appointmentID, to: appointment.id)
            .run(orThrow: DomainError.notFound("gone"))
        try await ConditionalUpdate(WaitlistEntry.self, id: try entry.requireID(), on: db).where(\.$status, .equal, "waiting")
            .set(\.$status, to: "booked").set(\.$appointmentID, to: appointment.id).set(\.$updatedAt, to: now)
            .run(orThrow: DomainError.conflict("The waitlist entry changed meanwhile."))
        try await closeOffers(of: offer.freedID, except: offerID)
        // The later booking this replaces is released (and offered in turn to whoever waits for it).
        if let replaces = entry.replacesID, let own = try await Appointment.find(replaces, on: db), own.appointmentStatus == .booked {
            _ = try await setStatus(own, to: .cancelled, expectedVersion: own.version,
                                    depositRelease: "Refunded: the booking moved to an earlier time from the waitlist.")
        }
        return .booked(appointment)
    }

    /// Every other open offer of a time that is taken: gone, and its patient told.
    private func closeOffers(of freedID: UUID, except taken: UUID) async throws {
        let open = try await WaitlistOffer.query(on: db).filter(\.$freedID == freedID).filter(\.$status == "offered").filter(\.$id != taken).all()
        for other in open {
            // One answered meanwhile (its patient lost the race and was shown so) is left as it is.
            do {
                try await ConditionalUpdate(WaitlistOffer.self, id: try other.requireID(), on: db).where(\.$status, .equal, "offered")
                    .set(\.$status, to: "gone").set(\.$answeredAt, to: now)
                    .run(orThrow: DomainError.conflict("answered"))
            } catch DomainError.conflict {
                continue
            }
            let entry = try await WaitlistEntry.require(other.$entry.id, on: db)
            guard let patient = try await Patient.find(entry.$patient.id, on: db),
                  let route = try await MessageRoute.to(patient: patient.id, email: patient.email ?? "", phone: patient.phoneE164 ?? "", on: db) else {
                continue
            }
            let location = try await self.location(entry.$location.id)
            let service = try await Service.require(entry.$service.id, on: db)
            let clinic = try await Clinic.require(clinicID, on: db)
            try await RenderedMessage.render(.waitlistGone, Self.noticeValues(patient: patient, start: other.startsAt, location: location,
                                                                              service: service, clinic: clinic), clinic: clinicID, on: db)
                .queue(by: route, clinic: clinicID, patient: patient.id, at: now, about: other.id, on: db)
        }
    }

    /// A new waitlist entry, checked: the service and location exist, a treatment names its zones, the days are a range
    /// from today up to `waitlistDays` ahead, the practitioner (if any) works here.
    func addToWaitlist(patient: Patient, locationID: UUID?, serviceCode: String?, zones: [String], earliest: String?, latest: String?,
                       practitionerID: String?, source: String, by staffID: UUID?) async throws -> WaitlistEntry {
        var issues: [FieldIssue] = []
        let location = try await self.location(locationID)
        let service = try await self.service(serviceCode)
        let today = CalendarDate(now, in: location.zone)
        let from = earliest.flatMap { CalendarDate(iso: $0.trimmingCharacters(in: .whitespaces)) }
        let to = latest.flatMap { CalendarDate(iso: $0.trimmingCharacters(in: .whitespaces)) }
        if from == nil { issues.append(FieldIssue(path: "earliest", problem: "must be a day, YYYY-MM-DD")) }
        if to == nil { issues.append(FieldIssue(path: "latest", problem: "must be a day, YYYY-MM-DD")) }
        if let from, let to {
            if to < from { issues.append(FieldIssue(path: "latest", problem: "must be on or after the earliest day")) }
            if to < today { issues.append(FieldIssue(path: "latest", problem: "is in the past")) }
            if today.days(until: to) > Self.waitlistDays { issues.append(FieldIssue(path: "latest", problem: "at most \(Self.waitlistDays) days ahead")) }
        }
        let known = Set(p.zones.map(\.id))
        if service.isTreatment {
            if zones.isEmpty { issues.append(FieldIssue(path: "zones", problem: "choose the zones to treat")) }
            for zone in zones where !known.contains(zone) { issues.append(FieldIssue(path: "zones", problem: "'\(zone.prefix(40))' is not a zone")) }
        }
        var practitioner: UUID?
        if let text = practitionerID?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
            guard let id = UUID(uuidString: text),
                  try await StaffUser.query(on: db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).first() != nil else {
                throw InvalidInput(issues + [FieldIssue(path: "practitioner", problem: "is not one of this clinic's practitioners")])
            }
            practitioner = id
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let patientID = try patient.requireID()
        let already = try await WaitlistEntry.query(on: db).filter(\.$patient.$id == patientID).filter(\.$status == "waiting")
            .filter(\.$service.$id == service.requireID()).count()
        if already > 0 { throw DomainError.conflict("This patient is already waiting for an earlier \(service.name.lowercased()); withdraw that first.") }
        let entry = WaitlistEntry()
        entry.$clinic.id = clinicID
        entry.$patient.id = patientID
        entry.$location.id = try location.requireID()
        entry.$service.id = try service.requireID()
        entry.zones = service.isTreatment ? zones.joined(separator: ",") : ""
        entry.earliest = max(from!, today).description
        entry.latest = to!.description
        entry.practitionerID = practitioner
        // A patient who already has a later booking of this service wants it earlier: taking an offer releases it.
        entry.replacesID = try await Appointment.query(on: db).filter(\.$patient.$id == patientID).filter(\.$service.$id == service.requireID())
            .filter(\.$status == AppointmentStatus.booked.rawValue).filter(\.$startsAt > now).sort(\.$startsAt).first()?.id
        entry.status = "waiting"
        entry.source = source
        entry.createdAt = now
        entry.createdBy = staffID
        entry.updatedAt = now
        try await entry.create(on: db)
        return entry
    }
}
