import DermisCore
import Fluent
import Foundation
import Vapor

/// The front desk's pages: a day calendar per location with practitioner and room columns, a week list, finding and
/// booking a free time (plain links and buttons: no dragging, every step by keyboard), a booking's page with its
/// status changes, move and .ics, and a patient's series.
struct CalendarController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let staff = AccessRule.staff(AccessRule.anyStaff, audits: "Appointment")
        routes.get("calendar", use: calendar).access(staff)
        routes.get("appointments", "new", use: newForm).access(staff)
        routes.post("appointments", use: create).access(staff)
        routes.get("appointments", ":appointmentID", use: show).access(staff)
        routes.post("appointments", ":appointmentID", "status", use: status).access(staff)
        routes.post("appointments", ":appointmentID", "move", use: move).access(staff)
        routes.get("appointments", ":appointmentID", "calendar.ics", use: ics).access(staff)
        routes.post("patients", ":patientID", "series", use: bookSeries).access(staff)
    }

    static func clock(_ date: Date, in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.hour, .minute], from: date)
        return String(format: "%02d:%02d", c.hour!, c.minute!)
    }

    // MARK: The calendar

    struct Cell: Encodable {
        /// `booking`, `free`, `off` or `covered` (inside a booking drawn above).
        let kind: String
        let rowspan: Int
        let label: String
        let link: String?
        let status: String
    }

    struct Row: Encodable {
        let time: String
        let cells: [Cell]
    }

    struct DayEntry: Encodable {
        let day: String
        let link: String
        let items: [Option]
    }

    struct CalendarPage: Encodable {
        let page: PageHeader
        let locations: [Option]
        let locationID: String
        let locationName: String
        let timeZone: String
        let date: String
        let previous: String
        let next: String
        let week: Bool
        let columns: [String]
        let rows: [Row]
        let days: [DayEntry]
    }

    func calendar(req: Request) async throws -> View {
        let scheduling = try AppointmentAPIController.service(req)
        let locations = try await scheduling.locations()
        guard !locations.isEmpty else { throw Abort(.notFound, reason: "No location is set up yet: an admin adds one (POST /api/v1/locations).") }
        let chosen = (try? req.query.get(String.self, at: "location")).flatMap(UUID.init(uuidString:))
        let location = locations.first { $0.id == chosen } ?? locations[0]
        let zone = location.zone
        let date = (try? req.query.get(String.self, at: "date")).flatMap(CalendarDate.init(iso:)) ?? CalendarDate(req.dermis.clock.now(), in: zone)
        let week = (try? req.query.get(String.self, at: "view")) == "week"
        let first = week ? date.adding(days: 1 - date.isoWeekday) : date
        let last = week ? first.adding(days: 6) : date
        let (start, _) = AftercareSchedule.bounds(of: first, in: zone)
        let (_, end) = AftercareSchedule.bounds(of: last, in: zone)
        let appointments = try await req.audited(.search, objectType: "Appointment") {
            try await Appointment.query(on: req.db).filter(\.$location.$id == location.requireID())
                .filter(\.$status != AppointmentStatus.cancelled.rawValue).filter(\.$status != AppointmentStatus.expired.rawValue)
                .filter(\.$startsAt < end).filter(\.$endsAt > start).sort(\.$startsAt).all()
        }
        let input = try await scheduling.input(at: location, from: first, to: last)
        let names = try await StaffAccounts.names(in: scheduling.clinicID, on: req.db).reduce(into: [String: String]()) { $0[$1.key.uuidString] = $1.value }
        let rooms = try await Room.query(on: req.db).filter(\.$location.$id == location.requireID()).sort(\.$name).all()
        let base = "/calendar?location=\(location.id!)"
        var rows: [Row] = []
        var columns: [String] = []
        var days: [DayEntry] = []
        if week {
            days = (0..<7).map { offset in
                let day = first.adding(days: offset)
                let items = appointments.filter { CalendarDate($0.startsAt, in: zone) == day }.map { a in
                    Option(id: a.id!.uuidString, name: "\(Self.clock(a.startsAt, in: zone)) \(a.contactName.isEmpty ? "—" : a.contactName) · \(names[a.practitionerID.uuidString] ?? "") · \(a.status)", selected: false)
                }
                return DayEntry(day: LocalTime.words(AftercareSchedule.bounds(of: day, in: zone).0, in: zone).components(separatedBy: ",")[0],
                                link: "\(base)&date=\(day)", items: items)
            }
        } else {
            (columns, rows) = dayGrid(date: date, location: location, input: input, appointments: appointments, rooms: rooms, names: names)
        }
        return try await req.view.render("calendar", CalendarPage(
            page: try await PageHeader(req, title: "Calendar"),
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == location.id) },
            locationID: location.id!.uuidString, locationName: location.name, timeZone: location.timeZone, date: date.description,
            previous: "\(base)&date=\(date.adding(days: week ? -7 : -1))\(week ? "&view=week" : "")",
            next: "\(base)&date=\(date.adding(days: week ? 7 : 1))\(week ? "&view=week" : "")",
            week: week, columns: columns, rows: rows, days: days))
    }

    /// A quarter-hour grid of one day: a column per practitioner working there, then per room. A booking fills its
    /// rows; a practitioner's free working quarter links to booking that time.
    private func dayGrid(date: CalendarDate, location: Location, input: ScheduleInput, appointments: [Appointment], rooms: [Room],
                         names: [String: String]) -> ([String], [Row]) {
        let zone = location.zone
        let working = Availability.workingTime(on: date, in: input)
        let ranges = working.flatMap { $0.ranges }
        let opening = ranges.map { $0.start }.min() ?? Availability.instant(date, ClockTime("09:00")!, in: zone)
        let closing = max(ranges.map { $0.end }.max() ?? Availability.instant(date, ClockTime("17:00")!, in: zone),
                          appointments.map(\.endsAt).max() ?? opening)
        let quarter = 15.0 * 60
        let count = max(1, Int((closing.timeIntervalSince(opening) / quarter).rounded(.up)))
        let times = (0..<count).map { opening.addingTimeInterval(Double($0) * quarter) }
        func column(for resource: String, isPractitioner: Bool, works: [TimeRange]) -> [Cell] {
            let mine = appointments.filter { isPractitioner ? $0.practitionerID.uuidString == resource : $0.roomID.uuidString == resource }
            var cells: [Cell] = []
            var coveredUntil = Date.distantPast
            for time in times {
                if time < coveredUntil { cells.append(Cell(kind: "covered", rowspan: 0, label: "", link: nil, status: "")); continue }
                if let a = mine.first(where: { $0.startsAt < time.addingTimeInterval(quarter) && $0.endsAt > time }) {
                    let span = max(1, Int((a.endsAt.timeIntervalSince(time) / quarter).rounded(.up)))
                    coveredUntil = time.addingTimeInterval(Double(span) * quarter)
                    let label = "\(Self.clock(a.startsAt, in: zone))–\(Self.clock(a.endsAt, in: zone)) \(a.contactName.isEmpty ? "(no name)" : a.contactName)"
                        + (isPractitioner ? "" : " · \(names[a.practitionerID.uuidString] ?? "")")
                    cells.append(Cell(kind: "booking", rowspan: span, label: label, link: "/appointments/\(a.id!)", status: a.status))
                } else if isPractitioner, works.contains(where: { $0.start <= time && time < $0.end }) {
                    let start = time.formatted(.iso8601)
                    cells.append(Cell(kind: "free", rowspan: 1, label: "Book \(Self.clock(time, in: zone))",
                                      link: "/appointments/new?location=\(location.id!)&practitioner=\(resource)&date=\(date)&start=\(start)", status: ""))
                } else {
                    cells.append(Cell(kind: "off", rowspan: 1, label: "", link: nil, status: ""))
                }
            }
            return cells
        }
        let practitionerColumns = working.map { entry in (names[entry.practitioner] ?? entry.practitioner, column(for: entry.practitioner, isPractitioner: true, works: entry.ranges)) }
        let roomColumns = rooms.map { ($0.name, column(for: $0.id!.uuidString, isPractitioner: false, works: [])) }
        let all = practitionerColumns + roomColumns
        let rows = times.enumerated().map { i, time in Row(time: Self.clock(time, in: zone), cells: all.map { $0.1[i] }) }
        return (all.map(\.0), rows)
    }

    // MARK: Finding and booking a time

    struct SlotButton: Encodable {
        let start: String
        let label: String
        let practitionerID: String
        let practitioner: String
    }

    struct NewPage: Encodable {
        let page: PageHeader
        let locations: [Option]
        let services: [Option]
        let practitioners: [Option]
        let patients: [Option]
        let zones: [Option]
        let date: String
        let treatment: Bool
        let slots: [SlotButton]
        let searched: Bool
        let interval: String?
        let errors: [ErrorLine]
        let zonesText: String
        let locationID: String
        let serviceCode: String
        let patientID: String
    }

    func newForm(req: Request) async throws -> Response {
        try await renderNew(req, status: .ok, errors: [], alternatives: nil)
    }

    private func renderNew(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine], alternatives: [FreeSlot]?) async throws -> Response {
        let scheduling = try AppointmentAPIController.service(req)
        let locations = try await scheduling.locations()
        let services = try await scheduling.services()
        let q = try req.query.decode(NewQuery.self)
        let location = locations.first { $0.id?.uuidString == q.location } ?? locations.first
        let service = services.first { $0.code == q.service || $0.id?.uuidString == q.service } ?? services.first
        let zones = q.zones ?? []
        let zone = location?.zone ?? .current
        let date = q.date.flatMap(CalendarDate.init(iso:)) ?? CalendarDate(req.dermis.clock.now(), in: zone)
        let names = try await StaffAccounts.names(in: scheduling.clinicID, on: req.db).reduce(into: [String: String]()) { $0[$1.key.uuidString] = $1.value }
        var slots: [FreeSlot] = alternatives ?? []
        var interval: String?
        var problems = errors
        let searched = alternatives != nil || q.find != nil
        // A patient named in the query is looked up in the caller's clinic (another clinic's is not found) and audited.
        var patientID: UUID?
        if let text = q.patient, !text.isEmpty {
            guard let id = UUID(uuidString: text) else { throw Abort(.notFound, reason: "No such patient.") }
            patientID = try await req.audited(.read, objectType: "Availability", patientID: id) {
                try await PatientRegistry(db: req.db, clinicID: scheduling.clinicID).find(id).requireID()
            }
        }
        if q.find != nil, let location, let service {
            do {
                let found = try await scheduling.availability(.init(location: location, service: service, zones: zones, from: date, to: date.adding(days: 6),
                                                                    practitionerID: q.practitioner.flatMap(UUID.init(uuidString:)),
                                                                    patientID: patientID))
                slots = found.slots
                if let rule = found.interval, let earliest = rule.earliest {
                    // Which zone was treated when is clinical history: front desk sees the date only.
                    interval = AccessRule.clinical.contains(try req.staff().role) ? "Not before \(earliest): \(rule.reason)." : "Not before \(earliest)."
                }
            } catch let invalid as InvalidInput {
                problems += ErrorLine.list(invalid)
            }
        }
        // The patient picker lists names and record numbers: a search of the registry, audited as one.
        let patients = try await req.audited(.search, objectType: "Patient") {
            try await Patient.query(on: req.db).filter(\.$clinic.$id == scheduling.clinicID).filter(\.$archived == false)
                .sort(\.$familyName).limit(500).all()
        }
        let p = req.dermis.clinicalProtocol
        let page = NewPage(
            page: try await PageHeader(req, title: "Book"),
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id == location?.id) },
            services: services.map { Option(id: $0.code, name: $0.name, selected: $0.id == service?.id) },
            practitioners: [Option(id: "", name: "Any practitioner", selected: q.practitioner == nil)]
                + Set(try await WorkingHours.query(on: req.db).filter(\.$location.$id ~~ locations.compactMap(\.id)).all().map(\.$staff.id)).compactMap { id in names[id.uuidString].map { (id, $0) } }
                .sorted { $0.1 < $1.1 }.map { Option(id: $0.0.uuidString, name: $0.1, selected: $0.0.uuidString == q.practitioner) },
            patients: [Option(id: "", name: "— no patient record (consultation enquiry)", selected: q.patient == nil)]
                + patients.map { Option(id: $0.id!.uuidString, name: "\($0.familyName), \($0.givenName) (\($0.mrn))", selected: $0.id?.uuidString == q.patient) },
            zones: p.zones.map { Option(id: $0.id, name: $0.displayName, selected: zones.contains($0.id)) },
            date: date.description, treatment: service?.isTreatment ?? false,
            slots: slots.prefix(60).map { s in
                SlotButton(start: s.start.formatted(.iso8601),
                           label: LocalTime.words(s.start, in: zone), practitionerID: s.practitionerID, practitioner: names[s.practitionerID] ?? "")
            },
            searched: searched, interval: interval, errors: problems, zonesText: zones.joined(separator: ","),
            locationID: location?.id?.uuidString ?? "", serviceCode: service?.code ?? "", patientID: q.patient ?? "")
        return try await req.view.render("appointment-new", page).response(status, for: req)
    }

    struct NewQuery: Content {
        var location: String?
        var service: String?
        var zones: [String]?
        var date: String?
        var practitioner: String?
        var patient: String?
        var find: String?
    }

    struct BookForm: Content {
        var location: String?
        var service: String?
        var zones: String?
        var start: String?
        var practitioner: String?
        var patient: String?
        var notes: String?
        var overrideReason: String?
    }

    func create(req: Request) async throws -> Response {
        let scheduling = try AppointmentAPIController.service(req)
        let form = try req.content.decode(BookForm.self)
        do {
            let input = AppointmentAPIController.CreateInput(
                location: form.location.flatMap(UUID.init(uuidString:)), service: form.service,
                zones: AppointmentAPIController.zones(form.zones), start: form.start.flatMap { try? Date($0, strategy: .iso8601) },
                practitioner: form.practitioner.flatMap(UUID.init(uuidString:)), patient: form.patient.flatMap(UUID.init(uuidString:)),
                notes: form.notes, overrideReason: form.overrideReason)
            let booking = try await AppointmentAPIController.booking(input, req, scheduling)
            let appointment = try await req.audited(.create, objectType: "Appointment", patientID: booking.patientID) {
                try await scheduling.book(booking, by: try req.staff().userID)
            }
            return req.redirect(to: "/appointments/\(appointment.id!)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderNew(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid), alternatives: nil)
        } catch let conflict as SchedulingService.Conflict {
            return try await renderNew(req, status: .conflict, errors: [ErrorLine(field: "start", message: conflict.message + " The next free times are below.")],
                                       alternatives: conflict.alternatives)
        }
    }

    // MARK: One booking

    struct AppointmentPage: Encodable {
        let page: PageHeader
        let id: String
        let version: Int
        let when: String
        let service: String
        let zones: String
        let patientID: String?
        let name: String
        let contact: String
        let practitioner: String
        let room: String
        let pen: String?
        let status: String
        let source: String
        let notes: String
        let actions: [Option]
        let movable: Bool
        let date: String
        let slots: [SlotButton]
        let errors: [ErrorLine]
    }

    func show(req: Request) async throws -> Response {
        try await renderShow(req, status: .ok, errors: [], alternatives: nil)
    }

    private func renderShow(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine], alternatives: [FreeSlot]?) async throws -> Response {
        let a = try await req.audited(.read, objectType: "Appointment", objectID: req.parameters.get("appointmentID")) { try await AppointmentAPIController.find(req) }
        let scheduling = try AppointmentAPIController.service(req)
        let location = try await scheduling.location(a.$location.id)
        let service = try await Service.require(a.$service.id, on: req.db)
        let zone = location.zone
        let practitioner = try await StaffUser.find(a.practitionerID, on: req.db)
        let room = try await Room.find(a.roomID, on: req.db)
        let pen = a.penID == nil ? nil : try await Device.find(a.penID, on: req.db)
        let transitions: [AppointmentStatus: [(AppointmentStatus, String)]] = [
            .pending: [(.booked, "Confirm"), (.cancelled, "Cancel")],
            .booked: [(.checkedIn, "Check in"), (.noShow, "No-show"), (.cancelled, "Cancel")],
            .checkedIn: [(.completed, "Completed"), (.cancelled, "Cancel")],
        ]
        let date = (try? req.query.get(String.self, at: "date")).flatMap(CalendarDate.init(iso:)) ?? CalendarDate(a.startsAt, in: zone)
        var slots = alternatives ?? []
        if alternatives == nil, (try? req.query.get(String.self, at: "find")) != nil {
            slots = try await scheduling.availability(.init(location: location, service: service, zones: a.zoneList, from: date, to: date.adding(days: 6),
                                                            patientID: a.$patient.id, ignoring: a.id)).slots
        }
        let names = try await StaffAccounts.names(in: scheduling.clinicID, on: req.db).reduce(into: [String: String]()) { $0[$1.key.uuidString] = $1.value }
        let page = AppointmentPage(
            page: try await PageHeader(req, title: "Booking"), id: a.id!.uuidString, version: a.version,
            when: "\(LocalTime.words(a.startsAt, in: zone))–\(Self.clock(a.endsAt, in: zone)) (\(location.name), \(location.timeZone))",
            service: service.name, zones: a.zoneList.map { req.dermis.clinicalProtocol.zone($0)?.displayName ?? $0 }.joined(separator: ", "),
            patientID: a.$patient.id?.uuidString, name: a.contactName, contact: [a.contactEmail, a.contactPhone].filter { !$0.isEmpty }.joined(separator: " · "),
            practitioner: practitioner?.name ?? "", room: room?.name ?? "", pen: pen.map { "\($0.model) \($0.serial)" }, status: a.status, source: a.source,
            notes: a.notes, actions: (a.appointmentStatus.flatMap { transitions[$0] } ?? []).map { Option(id: $0.0.rawValue, name: $0.1, selected: false) },
            movable: [.booked, .pending].contains(a.appointmentStatus), date: date.description,
            slots: slots.prefix(40).map { s in SlotButton(start: s.start.formatted(.iso8601), label: LocalTime.words(s.start, in: zone),
                                                         practitionerID: s.practitionerID, practitioner: names[s.practitionerID] ?? "") },
            errors: errors)
        return try await req.view.render("appointment", page).response(status, for: req)
    }

    struct StatusForm: Content {
        var status: String?
        var version: Int?
    }

    func status(req: Request) async throws -> Response {
        let a = try await AppointmentAPIController.find(req)
        let form = try req.content.decode(StatusForm.self)
        do {
            guard let status = form.status.flatMap(AppointmentStatus.init(rawValue:)) else { throw InvalidInput(path: "status", problem: "choose an action") }
            _ = try await req.audited(.update, objectType: "Appointment", objectID: a.id?.uuidString, patientID: a.$patient.id) {
                try await AppointmentAPIController.service(req).setStatus(a, to: status, expectedVersion: form.version ?? -1)
            }
        } catch let invalid as InvalidInput {
            return try await renderShow(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid), alternatives: nil)
        } catch let abort as any AbortError where [.conflict, .gone].contains(abort.status) {
            return try await renderShow(req, status: abort.status, errors: [ErrorLine(field: "status", message: abort.reason)], alternatives: nil)
        }
        return req.redirect(to: "/appointments/\(a.id!)", redirectType: .normal)
    }

    struct MoveForm: Content {
        var start: String?
        var practitioner: String?
        var version: Int?
    }

    func move(req: Request) async throws -> Response {
        let a = try await AppointmentAPIController.find(req)
        let form = try req.content.decode(MoveForm.self)
        do {
            guard let start = form.start.flatMap({ try? Date($0, strategy: .iso8601) }) else { throw InvalidInput(path: "start", problem: "choose a new time") }
            _ = try await req.audited(.update, objectType: "Appointment", objectID: a.id?.uuidString, patientID: a.$patient.id) {
                try await AppointmentAPIController.service(req).move(a, to: start, practitionerID: form.practitioner.flatMap(UUID.init(uuidString:)),
                                                                     expectedVersion: form.version ?? -1)
            }
        } catch let invalid as InvalidInput {
            return try await renderShow(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid), alternatives: nil)
        } catch let conflict as SchedulingService.Conflict {
            return try await renderShow(req, status: .conflict, errors: [ErrorLine(field: "start", message: conflict.message)], alternatives: conflict.alternatives)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderShow(req, status: .conflict, errors: [ErrorLine(field: "version", message: abort.reason)], alternatives: nil)
        }
        return req.redirect(to: "/appointments/\(a.id!)", redirectType: .normal)
    }

    func ics(req: Request) async throws -> Response {
        let a = try await req.audited(.export, objectType: "Appointment", objectID: req.parameters.get("appointmentID")) { try await AppointmentAPIController.find(req) }
        return try await Self.icsResponse(a, req)
    }

    /// The booking's invitation. It names the clinic, the service and the location — no clinical details.
    static func icsResponse(_ a: Appointment, _ req: Request) async throws -> Response {
        let location = try await Location.require(a.$location.id, on: req.db)
        let service = try await Service.require(a.$service.id, on: req.db)
        let clinic = try await Clinic.find(a.$clinic.id, on: req.db)
        let invite = try AppointmentNotices.invite(a, location: location, service: service, clinicName: clinic?.name ?? "the clinic",
                                                   now: req.dermis.clock.now())
        let response = Response(status: .ok, body: .init(string: invite.ics))
        response.headers.replaceOrAdd(name: .contentType, value: "text/calendar; charset=utf-8")
        response.headers.replaceOrAdd(name: .contentDisposition, value: "attachment; filename=\"appointment.ics\"")
        return response
    }

    // MARK: A patient's series

    struct SeriesForm: Content {
        var location: String?
        var firstDay: String?
        var practitioner: String?
    }

    /// Books the plan's series from the course page: the first free time on or after the chosen day, then the rest.
    func bookSeries(req: Request) async throws -> Response {
        let scheduling = try AppointmentAPIController.service(req)
        let patient = try await req.patient()
        let form = try req.content.decode(SeriesForm.self)
        let location = try await scheduling.location(form.location.flatMap(UUID.init(uuidString:)))
        guard let day = form.firstDay.flatMap(CalendarDate.init(iso:)) else { throw InvalidInput(path: "firstDay", problem: "must be a date YYYY-MM-DD") }
        _ = try await scheduling.bookSeries(for: patient, at: location, service: try await scheduling.service("treatment"), first: .firstFreeFrom(day),
                                            practitionerID: form.practitioner.flatMap(UUID.init(uuidString:)), by: try req.staff().userID)
        return req.redirect(to: "/patients/\(try patient.requireID())/course#bookings", redirectType: .normal)
    }
}
