import DermisCore
import Fluent
import Foundation
import Vapor

/// Setting up what can be booked: locations (each with its time zone), rooms, pens' locations, practitioners'
/// weekly hours and breaks, closures, leave, and services with who may do them. Admins change; staff read.
struct ScheduleSetupController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let routes = routes.grouped(UnitOfWorkMiddleware())
        let admins = AccessRule.staff(AccessRule.admins)
        let api = routes.grouped("api", "v1")
        api.get("locations", use: listLocations).access(.staff(AccessRule.anyStaff))
        api.post("locations", use: createLocation).access(admins)
        api.post("locations", ":locationID", "rooms", use: createRoom).access(admins)
        api.post("locations", ":locationID", "closures", use: createClosure).access(admins)
        api.put("staff", ":staffID", "hours", use: setHours).access(admins)
        api.post("staff", ":staffID", "leave", use: createLeave).access(admins)
        api.get("services", use: listServices).access(.staff(AccessRule.anyStaff))
        api.post("services", use: createService).access(admins)
        api.put("devices", ":deviceID", "location", use: placeDevice).access(admins)
    }

    static func clinicID(_ req: Request) throws -> UUID { try req.staff().clinicID }

    struct LocationJSON: Content {
        struct RoomJSON: Content {
            let id: UUID
            let name: String
        }
        let id: UUID
        let name: String
        let timeZone: String
        let address: String
        let phone: String
        let rooms: [RoomJSON]
    }

    func listLocations(req: Request) async throws -> [LocationJSON] {
        let locations = try await SchedulingService(req: req, clinicID: Self.clinicID(req)).locations()
        let rooms = try await Room.query(on: req.db).filter(\.$location.$id ~~ locations.compactMap(\.id)).sort(\.$name).all()
        return locations.map { location in
            LocationJSON(id: location.id!, name: location.name, timeZone: location.timeZone, address: location.address, phone: location.phone,
                         rooms: rooms.filter { $0.$location.id == location.id }.map { .init(id: $0.id!, name: $0.name) })
        }
    }

    struct LocationInput: Content {
        var name: String?
        var timeZone: String?
        var address: String?
        var phone: String?
    }

    func createLocation(req: Request) async throws -> Response {
        let input = try req.decodeJSON(LocationInput.self)
        let location = try await ScheduleSetup.createLocation(name: input.name ?? "", timeZone: input.timeZone ?? "", address: input.address ?? "",
                                                              phone: input.phone ?? "", clinicID: Self.clinicID(req), on: req.db)
        try await req.audit(.staffChange, objectType: "Location", objectID: location.id?.uuidString, outcome: .success)
        return try await LocationJSON(id: location.id!, name: location.name, timeZone: location.timeZone, address: location.address,
                                      phone: location.phone, rooms: []).encodeResponse(status: .created, for: req)
    }

    private func location(_ req: Request) async throws -> Location {
        try await SchedulingService(req: req, clinicID: Self.clinicID(req))
            .location(try req.uuidParameter("locationID", notFound: "No such location."))
    }

    struct NameInput: Content { var name: String? }

    func createRoom(req: Request) async throws -> Response {
        let location = try await location(req)
        let name = (try req.decodeJSON(NameInput.self).name ?? "").trimmingCharacters(in: .whitespaces)
        let room = try await ScheduleSetup.createRoom(name: name, at: location, on: req.db)
        try await req.audit(.staffChange, objectType: "Room", objectID: room.id?.uuidString, outcome: .success)
        return try await LocationJSON.RoomJSON(id: room.id!, name: room.name).encodeResponse(status: .created, for: req)
    }

    struct ClosureInput: Content {
        var day: String?
        var reason: String?
    }

    func createClosure(req: Request) async throws -> HTTPStatus {
        let location = try await location(req)
        let input = try req.decodeJSON(ClosureInput.self)
        let closure = try await ScheduleSetup.createClosure(day: input.day, reason: input.reason ?? "", at: location, on: req.db)
        try await req.audit(.staffChange, objectType: "Closure", objectID: closure.id?.uuidString, outcome: .success)
        return .created
    }

    private func staffMember(_ req: Request) async throws -> StaffUser {
        let id = try req.uuidParameter("staffID", notFound: "No such staff member.")
        guard let user = try await StaffUser.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == Self.clinicID(req)).first() else {
            throw Abort(.notFound, reason: "No such staff member.")
        }
        return user
    }

    struct HoursInput: Content {
        struct Row: Content {
            var weekday: Int?
            var start: String?
            var end: String?
            var kind: String?
        }
        var location: UUID?
        var hours: [Row]?
    }

    /// Replaces a practitioner's weekly hours and breaks at one location.
    func setHours(req: Request) async throws -> HTTPStatus {
        let user = try await staffMember(req)
        let input = try req.decodeJSON(HoursInput.self)
        let location = try await SchedulingService(req: req, clinicID: Self.clinicID(req)).location(input.location)
        let rows = try ScheduleSetup.weeklyRows(input.hours ?? [])
        try await ScheduleSetup.replaceHours(rows, staffID: try user.requireID(), locationID: try location.requireID(), on: req.db)
        try await req.audit(.staffChange, objectType: "WorkingHours", objectID: user.id?.uuidString, outcome: .success)
        return .noContent
    }

    struct LeaveInput: Content {
        var start: Date?
        var end: Date?
        var reason: String?
    }

    func createLeave(req: Request) async throws -> HTTPStatus {
        let user = try await staffMember(req)
        let input = try req.decodeJSON(LeaveInput.self)
        guard let start = input.start else { throw InvalidInput(path: "start", problem: "give the start (ISO 8601)") }
        guard let end = input.end, end > start else { throw InvalidInput(path: "end", problem: "give the end (ISO 8601), after the start") }
        if let issue = TextLimits.issue(input.reason, "reason", max: TextLimits.reason) { throw InvalidInput([issue]) }
        let leave = StaffLeave()
        leave.$staff.id = try user.requireID()
        leave.startsAt = start
        leave.endsAt = end
        leave.reason = input.reason ?? ""
        try await leave.create(on: req.db)
        try await req.audit(.staffChange, objectType: "StaffLeave", objectID: leave.id?.uuidString, outcome: .success)
        return .created
    }

    struct ServiceJSON: Content {
        let id: UUID
        let code: String
        let name: String
        let kind: String
        let minutes: Int?
        let bufferMinutes: Int
        let needsPen: Bool
        let isPublic: Bool
        let practitioners: [UUID]
    }

    func listServices(req: Request) async throws -> [ServiceJSON] {
        let services = try await SchedulingService(req: req, clinicID: Self.clinicID(req)).services()
        let qualifications = try await ServiceQualification.query(on: req.db).filter(\.$service.$id ~~ services.compactMap(\.id)).all()
        return services.map { s in
            ServiceJSON(id: s.id!, code: s.code, name: s.name, kind: s.kind, minutes: s.minutes, bufferMinutes: s.bufferMinutes, needsPen: s.needsPen,
                        isPublic: s.isPublic, practitioners: qualifications.filter { $0.$service.id == s.id }.map(\.$staff.id))
        }
    }

    struct ServiceInput: Content {
        var code: String?
        var name: String?
        var kind: String?
        var minutes: Int?
        var bufferMinutes: Int?
        var needsPen: Bool?
        var isPublic: Bool?
        var practitioners: [UUID]?
    }

    func createService(req: Request) async throws -> Response {
        let input = try req.decodeJSON(ServiceInput.self)
        let service = try await ScheduleSetup.createService(
            code: input.code ?? "", name: input.name ?? "", kind: input.kind ?? "", minutes: input.minutes, bufferMinutes: input.bufferMinutes ?? 0,
            needsPen: input.needsPen, isPublic: input.isPublic ?? false, practitioners: input.practitioners ?? [],
            clinicID: Self.clinicID(req), on: req.db)
        try await req.audit(.staffChange, objectType: "Service", objectID: service.id?.uuidString, outcome: .success)
        return try await ServiceJSON(id: service.id!, code: service.code, name: service.name, kind: service.kind, minutes: service.minutes,
                                     bufferMinutes: service.bufferMinutes, needsPen: service.needsPen, isPublic: service.isPublic,
                                     practitioners: input.practitioners ?? []).encodeResponse(status: .created, for: req)
    }

    struct DeviceLocationInput: Content { var location: UUID? }

    func placeDevice(req: Request) async throws -> HTTPStatus {
        let id = try req.uuidParameter("deviceID", notFound: "No such pen.")
        let clinicID = try Self.clinicID(req)
        guard let device = try await Device.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).first() else {
            throw Abort(.notFound, reason: "No such pen.")
        }
        let location = try await SchedulingService(req: req, clinicID: clinicID).location(try req.decodeJSON(DeviceLocationInput.self).location)
        device.$location.id = try location.requireID()
        try await device.save(on: req.db)
        try await req.audit(.staffChange, objectType: "Device", objectID: device.id?.uuidString, outcome: .success)
        return .noContent
    }
}

/// The checks and writes behind schedule setup, shared by the API and the demo seed.
enum ScheduleSetup {
    static func createLocation(name: String, timeZone: String, address: String, phone: String, clinicID: UUID, on db: any Database) async throws -> Location {
        var issues: [FieldIssue] = []
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { issues.append(FieldIssue(path: "name", problem: "is required")) }
        if TimeZone(identifier: timeZone) == nil {
            issues.append(FieldIssue(path: "timeZone", problem: "must be an IANA time zone such as Europe/London, not '\(timeZone)'"))
        }
        issues += [TextLimits.issue(trimmed, "name", max: TextLimits.short), TextLimits.issue(address, "address", max: TextLimits.reason),
                   TextLimits.issue(phone, "phone", max: TextLimits.short)].compactMap { $0 }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let location = Location()
        location.$clinic.id = clinicID
        location.name = trimmed
        location.timeZone = timeZone
        location.address = address
        location.phone = phone
        location.active = true
        do {
            try await Writes.savepoint(db) { db in try await location.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw Abort(.conflict, reason: "A location named \(trimmed) exists already.")
        }
        return location
    }

    static func createRoom(name: String, at location: Location, on db: any Database) async throws -> Room {
        guard !name.isEmpty else { throw InvalidInput(path: "name", problem: "is required") }
        if let issue = TextLimits.issue(name, "name", max: TextLimits.short) { throw InvalidInput([issue]) }
        let room = Room()
        room.$location.id = try location.requireID()
        room.name = name
        room.active = true
        do {
            try await Writes.savepoint(db) { db in try await room.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw Abort(.conflict, reason: "\(location.name) has a room named \(name) already.")
        }
        return room
    }

    static func createClosure(day text: String?, reason: String, at location: Location, on db: any Database) async throws -> Closure {
        guard let day = text.flatMap(CalendarDate.init(iso:)) else { throw InvalidInput(path: "day", problem: "must be a date YYYY-MM-DD") }
        if let issue = TextLimits.issue(reason, "reason", max: TextLimits.reason) { throw InvalidInput([issue]) }
        let closure = Closure()
        closure.$location.id = try location.requireID()
        closure.day = day.description
        closure.reason = reason
        do {
            try await Writes.savepoint(db) { db in try await closure.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw Abort(.conflict, reason: "\(location.name) is already closed on \(day).")
        }
        return closure
    }

    struct WeeklyRow: Sendable {
        let weekday: Int
        let start: ClockTime
        let end: ClockTime
        let kind: String
    }

    static func weeklyRows(_ rows: [ScheduleSetupController.HoursInput.Row]) throws -> [WeeklyRow] {
        var issues: [FieldIssue] = []
        var result: [WeeklyRow] = []
        for (i, row) in rows.enumerated() {
            let path = "hours[\(i)]"
            guard let weekday = row.weekday, (1...7).contains(weekday) else {
                issues.append(FieldIssue(path: "\(path).weekday", problem: "must be 1 (Monday) to 7 (Sunday)"))
                continue
            }
            guard let start = row.start.flatMap(ClockTime.init) else { issues.append(FieldIssue(path: "\(path).start", problem: "must be a time HH:MM")); continue }
            guard let end = row.end.flatMap(ClockTime.init), end > start else {
                issues.append(FieldIssue(path: "\(path).end", problem: "must be a time HH:MM after the start"))
                continue
            }
            let kind = row.kind ?? "hours"
            guard ["hours", "break"].contains(kind) else { issues.append(FieldIssue(path: "\(path).kind", problem: "must be hours or break")); continue }
            result.append(WeeklyRow(weekday: weekday, start: start, end: end, kind: kind))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return result
    }

    static func replaceHours(_ rows: [WeeklyRow], staffID: UUID, locationID: UUID, on db: any Database) async throws {
        try await Writes.transaction(db) { tx in
            try await WorkingHours.query(on: tx).filter(\.$staff.$id == staffID).filter(\.$location.$id == locationID).delete()
            for row in rows {
                let hours = WorkingHours()
                hours.$staff.id = staffID
                hours.$location.id = locationID
                hours.kind = row.kind
                hours.weekday = row.weekday
                hours.startMinute = row.start.minutes
                hours.endMinute = row.end.minutes
                try await hours.create(on: tx)
            }
        }
    }

    static func createService(code: String, name: String, kind: String, minutes: Int?, bufferMinutes: Int, needsPen: Bool?, isPublic: Bool,
                              practitioners: [UUID], clinicID: UUID, on db: any Database) async throws -> Service {
        var issues: [FieldIssue] = []
        if code.isEmpty || !code.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
            issues.append(FieldIssue(path: "code", problem: "letters, digits and hyphens, e.g. consultation"))
        }
        if name.trimmingCharacters(in: .whitespaces).isEmpty { issues.append(FieldIssue(path: "name", problem: "is required")) }
        issues += [TextLimits.issue(code, "code", max: TextLimits.short), TextLimits.issue(name, "name", max: TextLimits.short)].compactMap { $0 }
        if !["consultation", "treatment", "review"].contains(kind) { issues.append(FieldIssue(path: "kind", problem: "must be consultation, treatment or review")) }
        if kind != "treatment", !(5...480).contains(minutes ?? 0) { issues.append(FieldIssue(path: "minutes", problem: "must be 5 to 480 for a \(kind)")) }
        if kind == "treatment", minutes != nil { issues.append(FieldIssue(path: "minutes", problem: "a treatment's length comes from its zones; leave it out")) }
        if !(0...120).contains(bufferMinutes) { issues.append(FieldIssue(path: "bufferMinutes", problem: "must be 0 to 120")) }
        let staff = try await StaffUser.query(on: db).filter(\.$id ~~ practitioners).filter(\.$clinic.$id == clinicID).all()
        for (i, id) in practitioners.enumerated() where !staff.contains(where: { $0.id == id && $0.role == StaffRole.practitioner.rawValue }) {
            issues.append(FieldIssue(path: "practitioners[\(i)]", problem: "is not a practitioner of this clinic"))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let service = Service()
        service.$clinic.id = clinicID
        service.code = code
        service.name = name
        service.kind = kind
        service.minutes = kind == "treatment" ? nil : minutes
        service.bufferMinutes = bufferMinutes
        service.needsPen = needsPen ?? (kind == "treatment")
        service.isPublic = isPublic
        let chosen = practitioners
        do {
            try await Writes.savepoint(db) { tx in
                try await service.create(on: tx)
                for staffID in chosen {
                    let qualification = ServiceQualification()
                    qualification.$staff.id = staffID
                    qualification.$service.id = try service.requireID()
                    try await qualification.create(on: tx)
                }
            }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw Abort(.conflict, reason: "A service with the code \(code) exists already.")
        }
        return service
    }
}
