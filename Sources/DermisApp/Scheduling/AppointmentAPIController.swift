import DermisCore
import Fluent
import Foundation
import Vapor

/// The scheduling JSON API of docs/CONTRACT.md: availability, appointments (409 with the next free times on a conflict),
/// and booking a patient's whole series.
struct AppointmentAPIController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let anyStaff = AccessRule.staff(AccessRule.anyStaff, audits: "Appointment")
        let api = routes.grouped("api", "v1")
        api.get("availability", use: availability).access(.staff(AccessRule.anyStaff, audits: "Availability"))
        api.get("appointments", use: list).access(anyStaff)
        api.post("appointments", use: create).access(anyStaff)
        api.get("appointments", ":appointmentID", use: read).access(anyStaff)
        api.patch("appointments", ":appointmentID", use: update).access(anyStaff)
        api.post("patients", ":patientID", "series", use: bookSeries).access(anyStaff)
    }

    struct SlotJSON: Content {
        let start: Date
        let end: Date
        let practitionerID: String
        let roomID: String
        let penID: String?

        init(_ slot: FreeSlot) {
            start = slot.start
            end = slot.end
            practitionerID = slot.practitionerID
            roomID = slot.roomID
            penID = slot.penID
        }
    }

    struct IntervalJSON: Content {
        let earliest: CalendarDate?
        let intervalDays: Int
        let reason: String
    }

    struct AvailabilityJSON: Content {
        let location: UUID
        let service: String
        let minutes: Int
        let timeZone: String
        let slots: [SlotJSON]
        let seriesInterval: IntervalJSON?
    }

    static func service(_ req: Request) throws -> SchedulingService {
        SchedulingService(req: req, clinicID: try req.staff().clinicID)
    }

    static func date(_ text: String?, _ field: String) throws -> CalendarDate {
        guard let text, let date = CalendarDate(iso: text) else { throw InvalidInput(path: field, problem: "must be a date YYYY-MM-DD") }
        return date
    }

    static func zones(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func availability(req: Request) async throws -> AvailabilityJSON {
        let scheduling = try Self.service(req)
        let location = try await scheduling.location((try? req.query.get(String.self, at: "location")).flatMap(UUID.init(uuidString:)))
        let service = try await scheduling.service(try? req.query.get(String.self, at: "service"))
        let from = try Self.date(try? req.query.get(String.self, at: "from"), "from")
        let to = try Self.date((try? req.query.get(String.self, at: "to")) ?? from.description, "to")
        let practitioner = try? req.query.get(String.self, at: "practitioner")
        let patient = try? req.query.get(String.self, at: "patient")
        if practitioner != nil && practitioner.flatMap(UUID.init(uuidString:)) == nil { throw InvalidInput(path: "practitioner", problem: "must be a staff id") }
        var patientID: UUID?
        if let patient {
            guard let id = UUID(uuidString: patient) else { throw InvalidInput(path: "patient", problem: "must be a patient id") }
            let clinicID = try req.staff().clinicID
            patientID = try await req.audited(.read, objectType: "Availability", patientID: id) {
                try await PatientRegistry(db: req.db, clinicID: clinicID).find(id).requireID()
            }
        }
        let grid = try req.optionalQuery(Int.self, "grid") ?? 15
        guard [5, 10, 15, 20, 30, 60].contains(grid) else { throw InvalidInput(path: "grid", problem: "must be 5, 10, 15, 20, 30 or 60 minutes") }
        let found = try await scheduling.availability(.init(
            location: location, service: service, zones: Self.zones(try? req.query.get(String.self, at: "zones")), from: from, to: to,
            practitionerID: practitioner.flatMap(UUID.init(uuidString:)), patientID: patientID, gridMinutes: grid))
        return AvailabilityJSON(location: try location.requireID(), service: service.code, minutes: found.minutes, timeZone: location.timeZone,
                                slots: found.slots.map(SlotJSON.init),
                                seriesInterval: found.interval.map { IntervalJSON(earliest: $0.earliest, intervalDays: $0.intervalDays, reason: $0.reason) })
    }

    struct AppointmentJSON: Content {
        let id: UUID
        let location: UUID
        let service: UUID
        let zones: [String]
        let patient: UUID?
        let contactName: String
        let practitioner: UUID
        let room: UUID
        let pen: UUID?
        let start: Date
        let end: Date
        let holdsUntil: Date
        let status: String
        let source: String
        let version: Int
        let seriesID: UUID?

        init(_ a: Appointment) {
            id = a.id!
            location = a.$location.id
            service = a.$service.id
            zones = a.zoneList
            patient = a.$patient.id
            contactName = a.contactName
            practitioner = a.practitionerID
            room = a.roomID
            pen = a.penID
            start = a.startsAt
            end = a.endsAt
            holdsUntil = a.holdsUntil
            status = a.status
            source = a.source
            version = a.version
            seriesID = a.seriesID
        }
    }

    func list(req: Request) async throws -> [AppointmentJSON] {
        let scheduling = try Self.service(req)
        let location = try await scheduling.location((try? req.query.get(String.self, at: "location")).flatMap(UUID.init(uuidString:)))
        let from = try Self.date(try? req.query.get(String.self, at: "from"), "from")
        let to = try Self.date((try? req.query.get(String.self, at: "to")) ?? from.description, "to")
        let (start, _) = AftercareSchedule.bounds(of: from, in: location.zone)
        let (_, end) = AftercareSchedule.bounds(of: to, in: location.zone)
        return try await req.audited(.search, objectType: "Appointment") {
            try await Appointment.query(on: req.db).filter(\.$location.$id == location.requireID())
                .filter(\.$startsAt < end).filter(\.$endsAt > start).sort(\.$startsAt).all().map(AppointmentJSON.init)
        }
    }

    struct CreateInput: Content {
        var location: UUID?
        var service: String?
        var zones: [String]?
        var start: Date?
        var practitioner: UUID?
        var patient: UUID?
        var notes: String?
        var overrideReason: String?
    }

    /// The booking a staff member asks for, checked: patient in the clinic, contact from the patient record.
    static func booking(_ input: CreateInput, _ req: Request, _ scheduling: SchedulingService) async throws -> SchedulingService.Booking {
        let location = try await scheduling.location(input.location)
        let service = try await scheduling.service(input.service)
        guard let start = input.start else { throw InvalidInput(path: "start", problem: "give the start time (ISO 8601)") }
        var patient: Patient?
        if let id = input.patient { patient = try await PatientRegistry(db: req.db, clinicID: scheduling.clinicID).find(id) }
        if service.isTreatment && patient == nil { throw InvalidInput(path: "patient", problem: "a treatment is booked for a registered patient") }
        let reason = input.overrideReason?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let reason, !reason.isEmpty, reason.count < 10 {
            throw InvalidInput(path: "overrideReason", problem: "say why the series interval is overridden (at least 10 characters)")
        }
        // The series interval is a clinical rule: only a practitioner or an admin sets it aside (the refusal is audited).
        if let reason, !reason.isEmpty, !AccessRule.clinical.contains(try req.staff().role) {
            throw Abort(.forbidden, reason: "Only a practitioner or an admin may override the series interval.")
        }
        if let issue = TextLimits.issue(input.notes ?? "", "notes", max: TextLimits.notes) { throw InvalidInput([issue]) }
        return SchedulingService.Booking(
            location: location, service: service, zones: service.isTreatment ? (input.zones ?? []) : [], start: start,
            practitionerID: input.practitioner, patientID: try patient?.requireID(),
            contactName: patient.map { $0.fullName } ?? "", contactEmail: patient?.email ?? "", contactPhone: patient?.phoneE164 ?? "",
            notes: input.notes ?? "", source: "staff", status: .booked, overrideReason: (reason?.isEmpty ?? true) ? nil : reason, seriesID: nil)
    }

    /// A 409 body: the error and the next free times.
    static func conflictResponse(_ conflict: SchedulingService.Conflict, _ req: Request) async throws -> Response {
        struct Body: Content {
            struct ErrorBody: Content {
                let code: String
                let message: String
            }
            let error: ErrorBody
            let alternatives: [SlotJSON]
        }
        return try await Body(error: .init(code: "conflict", message: conflict.message), alternatives: conflict.alternatives.map(SlotJSON.init))
            .encodeResponse(status: .conflict, for: req)
    }

    /// 201 with the booking; with a client-made `id` already stored by the same request, 200 with that booking.
    func create(req: Request) async throws -> Response {
        let scheduling = try Self.service(req)
        let input = try req.decodeJSON(CreateInput.self)
        var booking = try await Self.booking(input, req, scheduling)
        booking.clientID = try req.clientMadeID()
        // A request sent again finds what the first one booked: the audit log records that as a read, not a second booking.
        if let stored = try await scheduling.replay(booking) {
            let found = try await req.audited(.read, objectType: "Appointment", objectID: stored.id?.uuidString, patientID: stored.$patient.id) { stored }
            return try await Self.answer(found, .ok, req)
        }
        do {
            let appointment = try await req.audited(.create, objectType: "Appointment", patientID: booking.patientID,
                                                    subject: { (a: Appointment) in a.$patient.id }) {
                try await scheduling.book(booking, by: try req.staff().userID)
            }
            return try await Self.answer(appointment, .created, req)
        } catch let conflict as SchedulingService.Conflict {
            // The same request sent twice at once (its client-made id): the other one may have just booked it.
            if booking.clientID != nil, let stored = try await scheduling.replay(booking) { return try await Self.answer(stored, .ok, req) }
            return try await Self.conflictResponse(conflict, req)
        } catch where booking.clientID != nil && (error as? any DatabaseError)?.isConstraintFailure == true {
            // Sent twice at once, the other insert of this id won: answer with what it stored.
            guard let stored = try await scheduling.replay(booking) else { throw error }
            return try await Self.answer(stored, .ok, req)
        }
    }

    /// A booking as JSON with its version as the ETag.
    static func answer(_ appointment: Appointment, _ status: HTTPStatus, _ req: Request) async throws -> Response {
        let response = try await AppointmentJSON(appointment).encodeResponse(status: status, for: req)
        response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(appointment.version)\"")
        return response
    }

    static func find(_ req: Request) async throws -> Appointment {
        let id = try req.uuidParameter("appointmentID", notFound: "No such appointment.")
        guard let appointment = try await Appointment.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == req.staff().clinicID).first() else {
            throw Abort(.notFound, reason: "No such appointment.")
        }
        return appointment
    }

    func read(req: Request) async throws -> Response {
        let appointment = try await req.audited(.read, objectType: "Appointment", objectID: req.parameters.get("appointmentID")) { try await Self.find(req) }
        let response = try await AppointmentJSON(appointment).encodeResponse(for: req)
        response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(appointment.version)\"")
        return response
    }

    struct UpdateInput: Content {
        var start: Date?
        var practitioner: UUID?
        var status: String?
    }

    func update(req: Request) async throws -> Response {
        let scheduling = try Self.service(req)
        let appointment = try await Self.find(req)
        let version = try req.ifMatchVersion()
        let input = try req.decodeJSON(UpdateInput.self)
        do {
            let updated = try await req.audited(.update, objectType: "Appointment", objectID: appointment.id?.uuidString, patientID: appointment.$patient.id) {
                if let start = input.start {
                    return try await scheduling.move(appointment, to: start, practitionerID: input.practitioner, expectedVersion: version)
                }
                guard let text = input.status, let status = AppointmentStatus(rawValue: text) else {
                    throw InvalidInput(path: "status", problem: "give a new start, or a status: booked, checked-in, completed, no-show or cancelled")
                }
                return try await scheduling.setStatus(appointment, to: status, expectedVersion: version)
            }
            let response = try await AppointmentJSON(updated).encodeResponse(for: req)
            response.headers.replaceOrAdd(name: .eTag, value: "W/\"\(updated.version)\"")
            return response
        } catch let conflict as SchedulingService.Conflict {
            return try await Self.conflictResponse(conflict, req)
        }
    }

    struct SeriesInput: Content {
        var location: UUID?
        var service: String?
        var first: Date?
        var practitioner: UUID?
    }

    struct SeriesJSON: Content {
        let seriesID: UUID
        let intervalDays: Int
        let appointments: [AppointmentJSON]
    }

    /// Books the latest plan's whole series from `first` (see `SchedulingService.bookSeries`).
    func bookSeries(req: Request) async throws -> Response {
        let scheduling = try Self.service(req)
        let patient = try await req.patient()
        let input = try req.decodeJSON(SeriesInput.self)
        let location = try await scheduling.location(input.location)
        let service = try await scheduling.service(input.service ?? "treatment")
        guard let first = input.first else { throw InvalidInput(path: "first", problem: "give the first session's start time (ISO 8601)") }
        do {
            let (seriesID, interval, booked) = try await scheduling.bookSeries(for: patient, at: location, service: service, first: .exactly(first),
                                                                                practitionerID: input.practitioner, by: try req.staff().userID)
            return try await SeriesJSON(seriesID: seriesID, intervalDays: interval, appointments: booked.map(AppointmentJSON.init))
                .encodeResponse(status: .created, for: req)
        } catch let conflict as SchedulingService.Conflict {
            return try await Self.conflictResponse(conflict, req)
        }
    }
}
