import DermisCore
import Fluent
import Foundation
import Vapor

/// The admin's page for what can be booked: locations and rooms, closures, each practitioner's week (hours and a
/// break per weekday, on the location's wall clock), leave, services and who may do them, and where each pen is.
/// The same checks as the set-up API (`ScheduleSetup`); a refused form keeps what was typed and names the field.
struct ScheduleAdminController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let routes = routes.grouped(UnitOfWorkMiddleware())
        let admins = AccessRule.staff(AccessRule.admins)
        let admin = routes.grouped("admin", "schedule")
        admin.get(use: show).access(admins)
        admin.post("locations", use: addLocation).access(admins)
        admin.post("rooms", use: addRoom).access(admins)
        admin.post("closures", use: addClosure).access(admins)
        admin.post("hours", use: setHours).access(admins)
        admin.post("leave", use: addLeave).access(admins)
        admin.post("services", use: addService).access(admins)
        admin.post("pens", use: placePen).access(admins)
        admin.post("notice", use: setNotice).access(admins)
    }

    struct LocationRow: Encodable {
        let name: String
        let timeZone: String
        let rooms: String
        let closures: String
    }

    struct WeekRow: Encodable {
        let weekday: Int
        let name: String
        let start: String
        let end: String
        let breakStart: String
        let breakEnd: String
    }

    struct HoursRow: Encodable {
        let practitioner: String
        let location: String
        let summary: String
    }

    struct ServiceRow: Encodable {
        let code: String
        let name: String
        let kind: String
        let length: String
        let practitioners: String
        let isPublic: Bool
    }

    struct Page: Encodable {
        let page: PageHeader
        let locations: [LocationRow]
        let locationOptions: [Option]
        let practitioners: [Option]
        let pens: [Option]
        let week: [WeekRow]
        let hours: [HoursRow]
        let services: [ServiceRow]
        let timeZones: [String]
        let errors: [ErrorLine]
        let saved: Bool
        let noticeHours: Int
    }

    static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

    func show(req: Request) async throws -> Response {
        try await render(req, status: .ok, errors: [])
    }

    private func render(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine]) async throws -> Response {
        let clinicID = try req.staff().clinicID
        let scheduling = SchedulingService(req: req, clinicID: clinicID)
        let locations = try await scheduling.locations()
        let rooms = try await Room.query(on: req.db).filter(\.$location.$id ~~ locations.compactMap(\.id)).sort(\.$name).all()
        let closures = try await Closure.query(on: req.db).filter(\.$location.$id ~~ locations.compactMap(\.id)).sort(\.$day).all()
        let staff = try await StaffUser.query(on: req.db).filter(\.$clinic.$id == clinicID).filter(\.$role == StaffRole.practitioner.rawValue)
            .filter(\.$active == true).sort(\.$name).all()
        let hours = try await WorkingHours.query(on: req.db).filter(\.$staff.$id ~~ staff.compactMap(\.id)).all()
        let services = try await scheduling.services()
        let qualifications = try await ServiceQualification.query(on: req.db).filter(\.$service.$id ~~ services.compactMap(\.id)).all()
        let pens = try await Device.query(on: req.db).filter(\.$clinic.$id == clinicID).sort(\.$serial).all()
        let names = Dictionary(staff.map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
        let locationNames = Dictionary(locations.map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
        func clock(_ minutes: Int) -> String { ClockTime(minutes: minutes)?.description ?? "?" }
        let grouped = Dictionary(grouping: hours) { "\($0.$staff.id)|\($0.$location.id)" }
        let page = Page(
            page: try await PageHeader(req, title: "Schedule set-up"),
            locations: locations.map { location in
                LocationRow(name: location.name, timeZone: location.timeZone,
                            rooms: rooms.filter { $0.$location.id == location.id }.map(\.name).joined(separator: ", "),
                            closures: closures.filter { $0.$location.id == location.id }.map { "\($0.day) \($0.reason)" }.joined(separator: "; "))
            },
            locationOptions: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: false) },
            practitioners: staff.map { Option(id: $0.id!.uuidString, name: $0.name, selected: false) },
            pens: pens.map { Option(id: $0.id!.uuidString, name: "\($0.model) \($0.serial)\($0.$location.id.flatMap { locationNames[$0] }.map { " — at \($0)" } ?? " — not placed")", selected: false) },
            week: Self.weekdays.enumerated().map { WeekRow(weekday: $0 + 1, name: $1, start: "", end: "", breakStart: "", breakEnd: "") },
            hours: grouped.values.compactMap { rows -> HoursRow? in
                guard let first = rows.first else { return nil }
                let summary = rows.sorted { ($0.weekday, $0.startMinute) < ($1.weekday, $1.startMinute) }.map {
                    "\(Self.weekdays[$0.weekday - 1].prefix(3)) \($0.kind == "break" ? "break " : "")\(clock($0.startMinute))–\(clock($0.endMinute))"
                }.joined(separator: ", ")
                return HoursRow(practitioner: names[first.$staff.id] ?? "?", location: locationNames[first.$location.id] ?? "?", summary: summary)
            }.sorted { ($0.practitioner, $0.location) < ($1.practitioner, $1.location) },
            services: services.map { s in
                ServiceRow(code: s.code, name: s.name, kind: s.kind,
                           length: s.isTreatment ? "from the zones" : "\(s.minutes ?? 0) min" + (s.bufferMinutes > 0 ? " + \(s.bufferMinutes) min buffer" : ""),
                           practitioners: qualifications.filter { $0.$service.id == s.id }.compactMap { names[$0.$staff.id] }.joined(separator: ", "),
                           isPublic: s.isPublic)
            },
            timeZones: TimeZone.knownTimeZoneIdentifiers.filter { $0.contains("/") && !$0.hasPrefix("Etc/") }.sorted(),
            errors: errors, saved: (try? req.query.get(String.self, at: "saved")) != nil,
            noticeHours: try await req.clinic()?.cancellationNoticeHours ?? Clinic.defaultNoticeHours)
        return try await req.view.render("schedule-admin", page).response(status, for: req)
    }

    /// Runs a change; a refusal re-renders the page naming the field, success goes back to it.
    private func change(_ req: Request, objectType: String, _ body: () async throws -> Void) async throws -> Response {
        do {
            try await body()
            try await req.audit(.staffChange, objectType: objectType, outcome: .success)
            return req.redirect(to: "/admin/schedule?saved=1", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await render(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid))
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await render(req, status: .conflict, errors: [ErrorLine(field: "", message: abort.reason)])
        }
    }

    private func location(_ req: Request, _ id: String?) async throws -> Location {
        try await SchedulingService(req: req, clinicID: try req.staff().clinicID).location(id.flatMap(UUID.init(uuidString:)))
    }

    private func practitioner(_ req: Request, _ id: String?) async throws -> StaffUser {
        guard let id = id.flatMap(UUID.init(uuidString:)),
              let user = try await StaffUser.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == req.staff().clinicID).first() else {
            throw InvalidInput(path: "practitioner", problem: "choose a practitioner")
        }
        return user
    }

    struct LocationForm: Content {
        var name: String?
        var timeZone: String?
        var address: String?
        var phone: String?
    }

    func addLocation(req: Request) async throws -> Response {
        let form = try req.content.decode(LocationForm.self)
        return try await change(req, objectType: "Location") {
            _ = try await ScheduleSetup.createLocation(name: form.name ?? "", timeZone: form.timeZone ?? "", address: form.address ?? "",
                                                       phone: form.phone ?? "", clinicID: try req.staff().clinicID, on: req.db)
        }
    }

    struct RoomForm: Content {
        var location: String?
        var name: String?
    }

    func addRoom(req: Request) async throws -> Response {
        let form = try req.content.decode(RoomForm.self)
        return try await change(req, objectType: "Room") {
            _ = try await ScheduleSetup.createRoom(name: (form.name ?? "").trimmingCharacters(in: .whitespaces), at: try await location(req, form.location), on: req.db)
        }
    }

    struct ClosureForm: Content {
        var location: String?
        var day: String?
        var reason: String?
    }

    func addClosure(req: Request) async throws -> Response {
        let form = try req.content.decode(ClosureForm.self)
        return try await change(req, objectType: "Closure") {
            _ = try await ScheduleSetup.createClosure(day: form.day, reason: form.reason ?? "", at: try await location(req, form.location), on: req.db)
        }
    }

    /// The week form: for each weekday, optional start and end, and an optional break.
    func setHours(req: Request) async throws -> Response {
        let fields = try req.content.decode([String: String].self)
        return try await change(req, objectType: "WorkingHours") {
            let person = try await practitioner(req, fields["practitioner"])
            let place = try await location(req, fields["location"])
            var rows: [ScheduleSetupController.HoursInput.Row] = []
            for weekday in 1...7 {
                func value(_ key: String) -> String? { fields["\(key)\(weekday)"].flatMap { $0.isEmpty ? nil : $0 } }
                if value("start") != nil || value("end") != nil {
                    rows.append(.init(weekday: weekday, start: value("start"), end: value("end"), kind: "hours"))
                }
                if value("breakStart") != nil || value("breakEnd") != nil {
                    rows.append(.init(weekday: weekday, start: value("breakStart"), end: value("breakEnd"), kind: "break"))
                }
            }
            let checked: [ScheduleSetup.WeeklyRow]
            do {
                checked = try ScheduleSetup.weeklyRows(rows)
            } catch let invalid as InvalidInput {
                // Name the weekday's fields as the form does, not the API's row index.
                throw InvalidInput(invalid.issues.map { issue in
                    guard let open = issue.path.firstIndex(of: "["), let close = issue.path.firstIndex(of: "]"),
                          let index = Int(issue.path[issue.path.index(after: open)..<close]), index < rows.count else { return issue }
                    let row = rows[index]
                    let field = issue.path.hasSuffix(".start") ? (row.kind == "break" ? "breakStart" : "start") : (row.kind == "break" ? "breakEnd" : "end")
                    return FieldIssue(path: "\(field)\(row.weekday ?? 0)", problem: "\(Self.weekdays[(row.weekday ?? 1) - 1]): \(issue.problem)")
                })
            }
            try await ScheduleSetup.replaceHours(checked, staffID: try person.requireID(), locationID: try place.requireID(), on: req.db)
        }
    }

    struct LeaveForm: Content {
        var practitioner: String?
        var from: String?
        var to: String?
        var reason: String?
    }

    /// Whole days of leave, from the first day's midnight to the day after the last, in the clinic's zone.
    func addLeave(req: Request) async throws -> Response {
        let form = try req.content.decode(LeaveForm.self)
        return try await change(req, objectType: "StaffLeave") {
            let person = try await practitioner(req, form.practitioner)
            guard let first = form.from.flatMap(CalendarDate.init(iso:)) else { throw InvalidInput(path: "from", problem: "must be a date YYYY-MM-DD") }
            guard let last = form.to.flatMap(CalendarDate.init(iso:)), last >= first else {
                throw InvalidInput(path: "to", problem: "must be a date YYYY-MM-DD, on or after the first day")
            }
            if let issue = TextLimits.issue(form.reason, "reason", max: TextLimits.reason) { throw InvalidInput([issue]) }
            let zone = try await req.clinic()?.zone ?? .current
            let leave = StaffLeave()
            leave.$staff.id = try person.requireID()
            leave.startsAt = AftercareSchedule.bounds(of: first, in: zone).0
            leave.endsAt = AftercareSchedule.bounds(of: last, in: zone).1
            leave.reason = form.reason ?? ""
            try await leave.create(on: req.db)
        }
    }

    func addService(req: Request) async throws -> Response {
        let fields = try req.content.decode([String: String].self)
        return try await change(req, objectType: "Service") {
            let chosen = fields.filter { $0.key.hasPrefix("can-") && $0.value == "on" }.compactMap { UUID(uuidString: String($0.key.dropFirst(4))) }
            let minutesText = fields["minutes"] ?? ""
            guard minutesText.isEmpty || Int(minutesText) != nil else { throw InvalidInput(path: "minutes", problem: "must be a whole number of minutes") }
            guard let buffer = Int(fields["bufferMinutes"].flatMap { $0.isEmpty ? "0" : $0 } ?? "0") else {
                throw InvalidInput(path: "bufferMinutes", problem: "must be a whole number of minutes")
            }
            _ = try await ScheduleSetup.createService(
                code: fields["code"] ?? "", name: fields["name"] ?? "", kind: fields["kind"] ?? "", minutes: Int(minutesText), bufferMinutes: buffer,
                needsPen: fields["kind"] == "treatment" || fields["needsPen"] == "on", isPublic: fields["isPublic"] == "on", practitioners: chosen,
                clinicID: try req.staff().clinicID, on: req.db)
        }
    }

    struct PenForm: Content {
        var pen: String?
        var location: String?
    }

    struct NoticeForm: Content {
        var hours: String?
    }

    /// The clinic's notice period: a cancellation with less notice is late (the reports; the patient's own pages).
    func setNotice(req: Request) async throws -> Response {
        let form = try req.content.decode(NoticeForm.self)
        return try await change(req, objectType: "Clinic") {
            let text = form.hours?.trimmingCharacters(in: .whitespaces) ?? ""
            guard let hours = Int(text), (0...336).contains(hours) else {
                throw InvalidInput(path: "hours", problem: "must be whole hours from 0 to 336 (two weeks)")
            }
            try await Clinic.query(on: req.db).filter(\.$id == req.staff().clinicID).set(\.$cancellationNoticeHours, to: hours).update()
        }
    }

    func placePen(req: Request) async throws -> Response {
        let form = try req.content.decode(PenForm.self)
        return try await change(req, objectType: "Device") {
            let place = try await location(req, form.location)
            guard let id = form.pen.flatMap(UUID.init(uuidString:)),
                  let pen = try await Device.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == req.staff().clinicID).first() else {
                throw InvalidInput(path: "pen", problem: "choose a pen")
            }
            pen.$location.id = try place.requireID()
            try await pen.save(on: req.db)
        }
    }
}
