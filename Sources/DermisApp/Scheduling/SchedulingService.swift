import DermisCore
import Fluent
import FluentSQLiteDriver
import Foundation
import PostgresNIO
import SQLKit
import Vapor

/// Availability and booking for one clinic: loads a location's resources and bookings into the pure
/// `Availability` search, and books with the database's no-overlap guard (R14). Shared by the staff pages, the
/// public page and the API.
struct SchedulingService {
    let req: Request
    let clinicID: UUID

    var db: any Database { req.db }
    var p: ClinicalProtocol { req.dermis.clinicalProtocol }
    var now: Date { req.dermis.clock.now() }

    /// How long a public booking is held before the patient confirms it.
    static let holdMinutes = 30
    /// How far ahead the "next free times" offered with a conflict look.
    static let alternativesDays = 14

    // MARK: Lookups

    func locations() async throws -> [Location] {
        try await Location.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$active == true).sort(\.$name).all()
    }

    func location(_ id: UUID?, field: String = "location") async throws -> Location {
        guard let id, let location = try await Location.query(on: db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).first() else {
            throw InvalidInput(path: field, problem: "choose one of the clinic's locations")
        }
        return location
    }

    func services(publicOnly: Bool = false) async throws -> [Service] {
        var query = Service.query(on: db).filter(\.$clinic.$id == clinicID)
        if publicOnly { query = query.filter(\.$isPublic == true) }
        return try await query.sort(\.$name).all()
    }

    /// A service by id or code.
    func service(_ key: String?, field: String = "service") async throws -> Service {
        let all = try await services()
        guard let key, let service = all.first(where: { $0.id?.uuidString == key || $0.code == key }) else {
            throw InvalidInput(path: field, problem: "choose one of: \(all.map(\.code).joined(separator: ", "))")
        }
        return service
    }

    /// The appointment's own length: the engine's appointment time for a treatment's zones, else the service's.
    func minutes(of service: Service, zones: [String]) throws -> Int {
        if service.isTreatment {
            return try Planning.appointmentMinutes(zones: zones, protocol: p)
        }
        guard let minutes = service.minutes, minutes > 0 else { throw InvalidInput(path: "service", problem: "has no length set") }
        return minutes
    }

    // MARK: Availability

    /// Everything the search needs at a location for the days searched (with a day either side, for the zone).
    func input(at location: Location, from: CalendarDate, to: CalendarDate) async throws -> ScheduleInput {
        let locationID = try location.requireID()
        let (start, _) = AftercareSchedule.bounds(of: from.adding(days: -1), in: location.zone)
        let (_, end) = AftercareSchedule.bounds(of: to.adding(days: 1), in: location.zone)
        let hours = try await WorkingHours.query(on: db).filter(\.$location.$id == locationID).all()
        let staffIDs = Array(Set(hours.map(\.$staff.id)))
        let staff = try await StaffUser.query(on: db).filter(\.$id ~~ staffIDs).filter(\.$active == true).sort(\.$name).all()
        let qualifications = try await ServiceQualification.query(on: db).filter(\.$staff.$id ~~ staffIDs).all()
        let services = Dictionary(try await services().map { ($0.id!, $0.code) }, uniquingKeysWith: { a, _ in a })
        let leave = try await StaffLeave.query(on: db).filter(\.$staff.$id ~~ staffIDs).filter(\.$endsAt > start).filter(\.$startsAt < end).all()
        let rooms = try await Room.query(on: db).filter(\.$location.$id == locationID).filter(\.$active == true).sort(\.$name).all()
        let pens = try await Device.query(on: db).filter(\.$location.$id == locationID).filter(\.$active == true).sort(\.$serial).all()
        let closures = try await Closure.query(on: db).filter(\.$location.$id == locationID).all().compactMap { CalendarDate(iso: $0.day) }
        let resourceIDs = staff.compactMap(\.id) + rooms.compactMap(\.id) + pens.compactMap(\.id)
        let held = resourceIDs.isEmpty ? [] : try await Appointment.query(on: db)
            .filter(\.$status ~~ AppointmentStatus.holding.map(\.rawValue))
            .filter(\.$startsAt < end).filter(\.$holdsUntil > start)
            .group(.or) { $0.filter(\.$practitionerID ~~ resourceIDs).filter(\.$roomID ~~ resourceIDs).filter(\.$penID ~~ resourceIDs) }
            .all()
            .filter { $0.status != AppointmentStatus.pending.rawValue || ($0.holdExpiresAt ?? .distantFuture) > now }
        var busy: [String: [TimeRange]] = [:]
        for appointment in held {
            let range = TimeRange(appointment.startsAt, appointment.holdsUntil)
            busy[appointment.practitionerID.uuidString, default: []].append(range)
            busy[appointment.roomID.uuidString, default: []].append(range)
            if let pen = appointment.penID { busy[pen.uuidString, default: []].append(range) }
        }
        func window(_ row: WorkingHours) -> WeeklyWindow? {
            guard let start = ClockTime(minutes: row.startMinute), let end = ClockTime(minutes: row.endMinute) else { return nil }
            return WeeklyWindow(weekday: row.weekday, start: start, end: end)
        }
        return ScheduleInput(
            timeZone: location.zone, closures: Set(closures),
            practitioners: staff.map { person in
                let mine = hours.filter { $0.$staff.id == person.id }
                return ScheduleInput.Practitioner(
                    id: person.id!.uuidString,
                    hours: mine.filter { $0.kind == "hours" }.compactMap(window), breaks: mine.filter { $0.kind == "break" }.compactMap(window),
                    leave: leave.filter { $0.$staff.id == person.id }.map { TimeRange($0.startsAt, $0.endsAt) },
                    services: Set(qualifications.filter { $0.$staff.id == person.id }.compactMap { services[$0.$service.id] }))
            },
            rooms: rooms.map { .init(id: $0.id!.uuidString) }, pens: pens.map { .init(id: $0.id!.uuidString) }, busy: busy)
    }

    struct Search {
        var location: Location
        var service: Service
        var zones: [String]
        var from: CalendarDate
        var to: CalendarDate
        var practitionerID: UUID?
        var patientID: UUID?
        var gridMinutes = 15
        /// A booking being moved: its own hold does not block it.
        var ignoring: UUID?
        /// Book inside the series interval anyway (staff only, with a reason that is audited).
        var overrideInterval = false
    }

    struct Found {
        let slots: [FreeSlot]
        let minutes: Int
        /// The series rule that moved the first possible day, when one did.
        let interval: SeriesRule.Result?
    }

    /// Free start times for a search, after now and after the patient's series interval for the zones.
    func availability(_ search: Search) async throws -> Found {
        guard search.from <= search.to, search.from.days(until: search.to) <= 92 else {
            throw InvalidInput(path: "to", problem: "must be on or after from, and at most 92 days later")
        }
        let minutes = try minutes(of: search.service, zones: search.zones)
        var input = try await input(at: search.location, from: search.from, to: search.to)
        if let ignoring = search.ignoring,
           let own = try await Appointment.query(on: db).filter(\.$id == ignoring).filter(\.$clinic.$id == clinicID).first() {
            let range = TimeRange(own.startsAt, own.holdsUntil)
            for key in [own.practitionerID.uuidString, own.roomID.uuidString] + (own.penID.map { [$0.uuidString] } ?? []) {
                input.busy[key]?.removeAll { $0 == range }
            }
        }
        var notBefore = now
        var interval: SeriesRule.Result?
        if search.service.isTreatment, let patientID = search.patientID, !search.overrideInterval {
            interval = try await seriesRule(patientID: patientID, zones: search.zones, ignoring: search.ignoring)
            if let earliest = interval?.earliest {
                notBefore = max(notBefore, AftercareSchedule.bounds(of: earliest, in: search.location.zone).0)
            }
        }
        let query = AvailabilityQuery(service: search.service.code, minutes: minutes, bufferMinutes: search.service.bufferMinutes,
                                      needsPen: search.service.needsPen, from: search.from, to: search.to,
                                      practitionerID: search.practitionerID?.uuidString, gridMinutes: search.gridMinutes, notBefore: notBefore)
        return Found(slots: Availability.search(query, in: input), minutes: minutes, interval: interval)
    }

    /// The earliest day the patient's next treatment of these zones may be: the last session or booked treatment in
    /// any of them, plus the series' minimum interval.
    func seriesRule(patientID: UUID, zones: [String], ignoring: UUID?) async throws -> SeriesRule.Result? {
        var last: [String: CalendarDate] = [:]
        let zone = try await Clinic.find(clinicID, on: db)?.zone ?? .current
        func note(_ zones: [String], _ day: CalendarDate) {
            for z in zones where last[z].map({ $0 < day }) ?? true { last[z] = day }
        }
        for session in try await TreatmentSession.query(on: db).filter(\.$patient.$id == patientID).all() {
            note(session.zones.map(\.zone), CalendarDate(session.signedAt ?? session.createdAt, in: zone))
        }
        let treatments = try await services().filter(\.isTreatment).compactMap(\.id)
        for booked in try await Appointment.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == patientID)
            .filter(\.$service.$id ~~ treatments)
            .filter(\.$status ~~ AppointmentStatus.holding.map(\.rawValue)).all() where booked.id != ignoring {
            // A hold that lapsed unconfirmed (not yet marked expired) holds nothing, the interval included.
            if booked.appointmentStatus == .pending && (booked.holdExpiresAt ?? .distantFuture) <= now { continue }
            note(booked.zoneList, CalendarDate(booked.startsAt, in: zone))
        }
        let plan = try await TreatmentPlanRecord.query(on: db).filter(\.$patient.$id == patientID).sort(\.$version, .descending).first()
        return SeriesRule.earliest(zones: zones, last: last, plan: try plan?.plan, protocol: p)
    }

    // MARK: Booking

    struct Booking {
        var location: Location
        var service: Service
        var zones: [String]
        var start: Date
        var practitionerID: UUID?
        var patientID: UUID?
        var contactName: String
        var contactEmail: String
        var contactPhone: String
        var notes: String
        var source: String
        var status: AppointmentStatus
        var overrideReason: String?
        var seriesID: UUID?
        /// The id the client made for this booking (see `replay`).
        var clientID: UUID? = nil
        /// A booking of the patient's this one replaces (an earlier time from the waitlist): its interval does not count.
        var replacing: UUID? = nil
    }

    /// The booking a client-made id already names, when it is this same booking (location, service, start, patient):
    /// a retry whose answer was lost. The id naming anything else is a 409. Nil when the id is new.
    func replay(_ booking: Booking) async throws -> Appointment? {
        guard let id = booking.clientID, let stored = try await Appointment.find(id, on: db) else { return nil }
        guard stored.$clinic.id == clinicID, stored.$location.id == booking.location.id, stored.$service.id == booking.service.id,
              stored.startsAt == booking.start, stored.$patient.id == booking.patientID,
              booking.practitionerID.map({ $0 == stored.practitionerID }) ?? true,
              stored.zones == booking.zones.joined(separator: ",") else {
            throw DomainError.conflict("id: already names another booking; make a new id for a new booking")
        }
        return stored
    }

    /// A conflict, with the next free times to offer instead.
    struct Conflict: AbortError {
        let message: String
        let alternatives: [FreeSlot]
        var status: HTTPResponseStatus { .conflict }
        var reason: String { message }
    }

    /// Books a start that availability offers; the database's guard decides races. A start that is not free (taken,
    /// outside hours, inside the series interval) is 409 with the next free times.
    func book(_ booking: Booking, by staffID: UUID?, confirmTokenHash: String? = nil) async throws -> Appointment {
        let search = Search(location: booking.location, service: booking.service, zones: booking.zones,
                            from: CalendarDate(booking.start, in: booking.location.zone), to: CalendarDate(booking.start, in: booking.location.zone),
                            practitionerID: booking.practitionerID, patientID: booking.patientID, ignoring: booking.replacing,
                            overrideInterval: booking.overrideReason != nil)
        let found = try await availability(search)
        guard let slot = found.slots.first(where: { $0.start == booking.start }) else {
            let clinical = req.principal.map { AccessRule.clinical.contains($0.role) } ?? false
            throw try await conflict(search, after: booking.start, because: found.interval.flatMap { interval in
                interval.earliest.map { clinical ? "not before \($0): \(interval.reason)" : "the series interval: not before \($0)" } }
                ?? "that time is not free")
        }
        let appointment = Appointment()
        appointment.id = booking.clientID ?? UUID()
        appointment.$clinic.id = clinicID
        appointment.$location.id = try booking.location.requireID()
        appointment.$patient.id = booking.patientID
        appointment.contactName = booking.contactName
        appointment.contactEmail = booking.contactEmail
        appointment.contactPhone = booking.contactPhone
        appointment.$service.id = try booking.service.requireID()
        appointment.zones = booking.zones.joined(separator: ",")
        appointment.practitionerID = UUID(uuidString: slot.practitionerID)!
        appointment.roomID = UUID(uuidString: slot.roomID)!
        appointment.penID = slot.penID.flatMap(UUID.init(uuidString:))
        appointment.startsAt = slot.start
        appointment.endsAt = slot.end
        appointment.holdsUntil = slot.end.addingTimeInterval(Double(booking.service.bufferMinutes * 60))
        appointment.status = booking.status.rawValue
        appointment.source = booking.source
        appointment.confirmTokenHash = confirmTokenHash
        appointment.holdExpiresAt = booking.status == .pending ? now.addingTimeInterval(Double(Self.holdMinutes * 60)) : nil
        appointment.seriesID = booking.seriesID
        appointment.notes = [booking.notes, booking.overrideReason.map { "Series interval overridden: \($0)" }].compactMap { $0 }
            .filter { !$0.isEmpty }.joined(separator: "\n")
        appointment.version = 1
        appointment.createdAt = now
        appointment.createdBy = staffID
        appointment.updatedAt = now
        do {
            try await guarded(excluding: nil, appointment) { db in
                try await appointment.create(on: db)
                // A booking staff make is confirmed to the patient at once, with the invitation (an online hold is
                // confirmed by its link first; a series, in one message once it is booked whole).
                if booking.status == .booked && booking.seriesID == nil {
                    try await AppointmentNotices.queue(.confirmed, for: appointment, on: db, now: now)
                }
            }
        } catch is OverlapRefused {
            throw try await conflict(search, after: booking.start, because: "someone else booked that time a moment ago")
        }
        return appointment
    }

    /// Moves a booking to a new start (same service and zones), under the same guard.
    func move(_ appointment: Appointment, to start: Date, practitionerID: UUID?, expectedVersion: Int) async throws -> Appointment {
        guard appointment.version == expectedVersion else { throw Self.changedSince }
        guard [.booked, .pending].contains(appointment.appointmentStatus) else {
            throw DomainError.conflict("A \(appointment.status) booking cannot be moved.")
        }
        let location = try await self.location(appointment.$location.id)
        let service = try await Service.require(appointment.$service.id, on: db)
        let day = CalendarDate(start, in: location.zone)
        let search = Search(location: location, service: service, zones: appointment.zoneList, from: day, to: day,
                            practitionerID: practitionerID, patientID: appointment.$patient.id, ignoring: appointment.id)
        let found = try await availability(search)
        guard let slot = found.slots.first(where: { $0.start == start }) else {
            throw try await conflict(search, after: start, because: "that time is not free")
        }
        let id = try appointment.requireID()
        let holds = slot.end.addingTimeInterval(Double(service.bufferMinutes * 60))
        guard let practitioner = UUID(uuidString: slot.practitionerID), let room = UUID(uuidString: slot.roomID) else {
            throw Abort(.internalServerError)
        }
        let pen = slot.penID.flatMap(UUID.init(uuidString:))
        let at = now
        do {
            try await guarded(excluding: id, TimeRange(slot.start, holds), practitioner: practitioner, room: room, pen: pen) { db in
                try await ConditionalUpdate.versioned(Appointment.self, id: id, version: \.$version, expected: expectedVersion, on: db)
                    .set(\.$startsAt, to: slot.start).set(\.$endsAt, to: slot.end).set(\.$holdsUntil, to: holds)
                    .set(\.$practitionerID, to: practitioner).set(\.$roomID, to: room).set(\.$penID, to: pen)
                    .set(\.$updatedAt, to: at)
                    .run(orThrow: Self.changedSince)
                if appointment.appointmentStatus == .booked {
                    try await AppointmentNotices.queue(.moved, for: try await Appointment.require(id, on: db), on: db, now: at)
                }
            }
        } catch is OverlapRefused {
            throw try await conflict(search, after: start, because: "someone else booked that time a moment ago")
        }
        // The time it left is free: offered to the waitlist like a cancelled one (its own offers, apart from any other).
        if appointment.appointmentStatus == .booked {
            let left = Appointment()
            left.id = UUID()
            left.$clinic.id = appointment.$clinic.id
            left.$location.id = appointment.$location.id
            left.$service.id = appointment.$service.id
            left.$patient.id = appointment.$patient.id
            left.practitionerID = appointment.practitionerID
            left.startsAt = appointment.startsAt
            _ = try await offerFreedTime(left, base: PortalSignInController.linkBase(req))
        }
        return try await Appointment.require(id, on: db)
    }

    static let changedSince = DomainError.conflict("Someone changed this booking since you opened it.")

    /// Changes a booking's status (cancel, no-show, check-in, confirm), version-checked.
    /// `depositRelease`: the clinic itself ends the booking (it moved elsewhere): a held deposit is given back, with
    /// these words, whatever the notice.
    func setStatus(_ appointment: Appointment, to status: AppointmentStatus, expectedVersion: Int,
                   depositRelease: String? = nil) async throws -> Appointment {
        guard appointment.version == expectedVersion else { throw Self.changedSince }
        let allowed: [AppointmentStatus: [AppointmentStatus]] = [
            .pending: [.booked, .cancelled], .booked: [.checkedIn, .noShow, .cancelled], .checkedIn: [.completed, .cancelled],
        ]
        let lapsed = appointment.appointmentStatus == .expired
            || (appointment.appointmentStatus == .pending && (appointment.holdExpiresAt ?? .distantPast) <= now)
        if lapsed && status == .booked { throw Abort(.gone, reason: "This hold lapsed before it was confirmed; please book again.") }
        guard let current = appointment.appointmentStatus, allowed[current]?.contains(status) == true else {
            throw DomainError.conflict("A \(appointment.status) booking cannot become \(status.rawValue).")
        }
        // From the status read, too: expiring a lapsed hold changes the status and not the version.
        try await ConditionalUpdate.versioned(Appointment.self, id: try appointment.requireID(), version: \.$version, expected: expectedVersion, on: db)
            .where(\.$status, .equal, appointment.status)
            .set(\.$status, to: status.rawValue).set(\.$updatedAt, to: now)
            .set(\.$holdExpiresAt, to: status == .booked ? nil : appointment.holdExpiresAt)
            .run(orThrow: Self.changedSince)
        let id = try appointment.requireID()
        let changed = try await Appointment.require(id, on: db)
        // The patient hears of a confirmation (an online hold confirmed by its link) and of a cancellation.
        if status == .booked { try await AppointmentNotices.queue(.confirmed, for: changed, on: db, now: now) }
        if status == .cancelled && current != .pending { try await AppointmentNotices.queue(.cancelled, for: changed, on: db, now: now) }
        // A deposit held for it is released or kept as its policy says, in the same unit of work.
        try await Deposits(db: db, clinicID: clinicID, provider: req.application.payments, now: now)
            .statusChanged(changed, to: status, release: depositRelease)
        // A booked time given up is offered to the patients waiting for one.
        if status == .cancelled && current != .pending { _ = try await offerFreedTime(changed, base: PortalSignInController.linkBase(req)) }
        return changed
    }

    enum SeriesStart {
        /// The first session at exactly this time.
        case exactly(Date)
        /// The first free time on or after this day.
        case firstFreeFrom(CalendarDate)
    }

    /// Books the patient's latest plan's whole series: each session after the first on the first free time on or after
    /// the previous booking's day plus the plan's interval — never earlier, so the interval is never shortened. All or
    /// nothing: a series that cannot be booked whole leaves no booking behind. Each booking is audited in the same unit of work.
    func bookSeries(for patient: Patient, at location: Location, service: Service, first: SeriesStart, practitionerID: UUID?,
                    by staffID: UUID) async throws -> (UUID, Int, [Appointment]) {
        let patientID = try patient.requireID()
        guard let plan = try await TreatmentPlanRecord.query(on: db).filter(\.$patient.$id == patientID).sort(\.$version, .descending).first()?.plan else {
            throw InvalidInput(path: "plan", problem: "the patient has no treatment plan: its series sets the number of sessions and the interval")
        }
        guard service.isTreatment else { throw InvalidInput(path: "service", problem: "a series is booked for a treatment service") }
        let seriesID = UUID()
        let zones = plan.zones.map(\.zone)
        // One unit of work: every session and its audit row commit together, or none does — nothing is undone by hand.
        let booked = try await Writes.transaction(db) { _ in
            var booked: [Appointment] = []
            for index in 0..<plan.series.sessions {
                var start: Date
                switch (index, first) {
                case (0, .exactly(let date)):
                    start = date
                default:
                    let earliest: CalendarDate
                    if index == 0, case .firstFreeFrom(let day) = first { earliest = day } else {
                        earliest = CalendarDate(booked[index - 1].startsAt, in: location.zone).adding(days: plan.series.minIntervalDays)
                    }
                    let found = try await availability(.init(location: location, service: service, zones: zones, from: earliest,
                                                             to: earliest.adding(days: 28), practitionerID: practitionerID, patientID: patientID))
                    guard let slot = found.slots.first else {
                        throw Conflict(message: "No free time for session \(index + 1) within 4 weeks of \(earliest).", alternatives: [])
                    }
                    start = slot.start
                }
                let booking = Booking(
                    location: location, service: service, zones: zones, start: start, practitionerID: practitionerID, patientID: patientID,
                    contactName: patient.fullName, contactEmail: patient.email ?? "", contactPhone: patient.phoneE164 ?? "",
                    notes: "Session \(index + 1) of \(plan.series.sessions)", source: "staff", status: .booked, overrideReason: nil, seriesID: seriesID)
                booked.append(try await req.audited(.create, objectType: "Appointment", patientID: patientID) { try await book(booking, by: staffID) })
            }
            try await AppointmentNotices.queueSeries(booked, on: db, now: now)
            return booked
        }
        return (seriesID, plan.series.minIntervalDays, booked)
    }

    struct OverlapRefused: Error {}

    private func guarded(excluding: UUID?, _ appointment: Appointment, _ write: @escaping @Sendable (any Database) async throws -> Void) async throws {
        try await guarded(excluding: excluding, TimeRange(appointment.startsAt, appointment.holdsUntil), practitioner: appointment.practitionerID,
                          room: appointment.roomID, pen: appointment.penID, write)
    }

    /// Runs a booking write under the no-overlap guard, in the request's unit of work. PostgreSQL: the exclusion
    /// constraints refuse an overlap (SQLSTATE 23P01); the write runs under a savepoint so that a refusal leaves the
    /// transaction usable (for the alternatives). SQLite: the unit of work holds the write lock (BEGIN IMMEDIATE), then
    /// the overlap check, then the write. Lapsed public holds are expired first, so they free their time.
    private func guarded(excluding: UUID?, _ range: TimeRange, practitioner: UUID, room: UUID, pen: UUID?,
                         _ write: @escaping @Sendable (any Database) async throws -> Void) async throws {
        let at = now
        try await Writes.transaction(db) { tx in
            guard let sql = tx as? any SQLDatabase else { throw Abort(.internalServerError) }
            try await Self.expireHolds(sql, at: at)
            if tx is any SQLiteDatabase {
                var check = sql.select().column("id").from(Appointment.schema)
                    .where(SQLRaw("status IN \(AppointmentStatus.holdingSQL)"))
                    .where("starts_at", .lessThan, range.end).where("holds_until", .greaterThan, range.start)
                    .where { group in
                        var g = group.orWhere("practitioner_id", .equal, practitioner).orWhere("room_id", .equal, room)
                        if let pen { g = g.orWhere("pen_id", .equal, pen) }
                        return g
                    }
                if let excluding { check = check.where("id", .notEqual, excluding) }
                if try await check.limit(1).first() != nil { throw OverlapRefused() }
            }
            do {
                try await Writes.savepoint(tx) { db in try await write(db) }
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23P01" {
                // exclusion_violation: one of the no-overlap constraints refused the write.
                throw OverlapRefused()
            }
        }
    }

    private static func expireHolds(_ sql: any SQLDatabase, at: Date) async throws {
        try await sql.update(Appointment.schema).set("status", to: AppointmentStatus.expired.rawValue)
            .where("status", .equal, AppointmentStatus.pending.rawValue).where("hold_expires_at", .lessThanOrEqual, at).run()
    }

    /// A 409 that offers the next free times (up to five, from the requested time on, within two weeks).
    private func conflict(_ search: Search, after start: Date, because reason: String) async throws -> Conflict {
        var later = search
        later.from = search.from
        later.to = search.from.adding(days: Self.alternativesDays)
        later.ignoring = search.ignoring
        let next = try await availability(later).slots.filter { $0.start >= start }
        var seen = Set<Date>()
        let alternatives = next.filter { seen.insert($0.start).inserted }.prefix(5)
        return Conflict(message: "Not booked: \(reason).", alternatives: Array(alternatives))
    }
}

/// The series interval per zone: no treatment of a zone before the minimum interval since its last one (docs/PROTOCOL.md
/// series; a booking inside it needs an override with a reason).
enum SeriesRule {
    struct Result: Sendable {
        let earliest: CalendarDate?
        let intervalDays: Int
        let reason: String
    }

    /// `last`: the day of the latest session or booked treatment per zone. The interval is the latest plan's when it
    /// names the zones, else the protocol's shortest series interval (no indication known).
    static func earliest(zones: [String], last: [String: CalendarDate], plan: PlanResult?, protocol p: ClinicalProtocol) -> Result? {
        let fromPlan = plan.flatMap { plan in zones.allSatisfy { z in plan.zones.contains { $0.zone == z } } ? plan.series.minIntervalDays : nil }
        guard let days = fromPlan ?? p.indications.map(\.series.minIntervalDays).min() else { return nil }
        let source = fromPlan != nil ? "the plan's series interval" : "the shortest series interval in the protocol (no plan names these zones)"
        let latest = zones.compactMap { z in last[z].map { (z, $0) } }.max { $0.1 < $1.1 }
        guard let latest else { return Result(earliest: nil, intervalDays: days, reason: "no earlier treatment of these zones") }
        let name = p.zone(latest.0)?.displayName ?? latest.0
        return Result(earliest: latest.1.adding(days: days), intervalDays: days,
                      reason: "\(name) was treated or booked on \(latest.1); \(source) is \(days) days")
    }
}
