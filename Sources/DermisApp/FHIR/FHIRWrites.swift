import DermisCore
import Fluent
import Foundation
import Vapor

/// Creates and updates over FHIR, through the same registry, scheduling rules and audit as the app: a FHIR Patient
/// is validated as the form is, an Appointment is booked by the same service (the no-double-booking guard included).
struct FHIRWrites {
    static let writable: Set<String> = ["Patient", "Appointment"]

    let ctx: FHIRController.Context
    var req: Request { ctx.req }

    func create(_ type: String, _ value: FHIRValue) async throws -> FHIRResource {
        switch type {
        case "Patient": return try await createPatient(value)
        default: return try await createAppointment(value)
        }
    }

    func update(_ type: String, id: String, _ value: FHIRValue, expectedVersion: Int) async throws -> FHIRResource {
        guard let uuid = UUID(uuidString: id) else { throw FHIRError(.notFound, code: "not-found", "\(type)/\(id) is not known") }
        switch type {
        case "Patient": return try await updatePatient(uuid, value, expectedVersion: expectedVersion)
        default: return try await updateAppointment(uuid, value, expectedVersion: expectedVersion)
        }
    }

    // MARK: Patient

    /// The form's fields, from a FHIR Patient; the form's validation names each bad field by its FHIRPath.
    struct PatientInput {
        let details: PatientDetails.Valid
        let identifiers: [(system: String, value: String)]
        let active: Bool
    }

    static let patientPaths = ["givenName": "Patient.name[0].given[0]", "familyName": "Patient.name[0].family",
                               "dateOfBirth": "Patient.birthDate", "phone": "Patient.telecom.where(system='phone')",
                               "email": "Patient.telecom.where(system='email')", "fitzpatrickType": "Patient.extension"]

    /// `keeping` is the stored record an update starts from: what FHIR does not carry (the Fitzpatrick type) stays.
    func patientInput(_ value: FHIRValue, keeping stored: Patient? = nil) async throws -> PatientInput {
        var issues: [FieldIssue] = []
        func string(_ v: FHIRValue?, _ path: String) -> String? {
            guard let v, v != .null else { return nil }
            guard let s = v.stringValue else { issues.append(FieldIssue(path: path, problem: "must be a string")); return nil }
            return s
        }
        for (element, kind) in [("name", "HumanName"), ("telecom", "ContactPoint"), ("identifier", "Identifier")]
            where value[element] != nil && value[element] != .null && value[element]?.arrayValue == nil {
            issues.append(FieldIssue(path: "Patient.\(element)", problem: "must be an array of \(kind)"))
        }
        let names = value["name"]?.arrayValue ?? []
        let name = names.first { $0["use"]?.stringValue == "official" } ?? names.first
        let family = string(name?["family"], "Patient.name[0].family") ?? ""
        let given = (name?["given"]?.arrayValue?.first).flatMap { string($0, "Patient.name[0].given[0]") } ?? ""
        let birth = string(value["birthDate"], "Patient.birthDate") ?? ""
        var phone: String?, email: String?
        for (i, telecom) in (value["telecom"]?.arrayValue ?? []).enumerated() {
            let system = telecom["system"]?.stringValue
            let v = string(telecom["value"], "Patient.telecom[\(i)].value")
            if system == "phone", phone == nil { phone = v }
            if system == "email", email == nil { email = v }
        }
        var identifiers: [(String, String)] = []
        for (i, identifier) in (value["identifier"]?.arrayValue ?? []).enumerated() {
            guard let system = string(identifier["system"], "Patient.identifier[\(i)].system"),
                  let v = string(identifier["value"], "Patient.identifier[\(i)].value") else {
                issues.append(FieldIssue(path: "Patient.identifier[\(i)]", problem: "needs a system and a value"))
                continue
            }
            if system == FHIRNames.mrn { continue }  // Dermis's own record number: assigned, not taken
            guard system.count <= 200, v.count <= 200, !v.isEmpty else {
                issues.append(FieldIssue(path: "Patient.identifier[\(i)]", problem: "system and value must be 1 to 200 characters"))
                continue
            }
            identifiers.append((system, v))
        }
        var active = true
        if let a = value["active"], a != .null {
            guard case let .bool(b) = a else { throw InvalidInput(path: "Patient.active", problem: "must be true or false") }
            active = b
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        do {
            let details = try PatientDetails(givenName: given, familyName: family, dateOfBirth: birth, phone: phone, email: email,
                                         fitzpatrickType: stored?.fitzpatrickType)
                .validated(today: req.today(in: try await req.clinic()))
            return PatientInput(details: details, identifiers: identifiers, active: active)
        } catch let invalid as InvalidInput {
            throw InvalidInput(invalid.issues.map { FieldIssue(path: Self.patientPaths[$0.path] ?? $0.path, problem: $0.problem) })
        }
    }

    func createPatient(_ value: FHIRValue) async throws -> FHIRResource {
        let input = try await patientInput(value)
        let staff = ctx.staff
        let patient = try await req.audited(.create, objectType: "Patient", subject: { (p: Patient) in p.id }) {
            let registry = PatientRegistry(db: req.db, clinicID: staff.clinicID)
            let now = req.dermis.clock.now()
            let patient = try await registry.create(input.details, by: staff.userID, at: now)
            try await saveIdentifiers(input.identifiers, for: try patient.requireID(), at: now)
            if !input.active { return try await registry.setArchived(try patient.requireID(), true, by: staff.userID, at: now) }
            return patient
        }
        return try await ctx.store.patients([patient])[0]
    }

    func updatePatient(_ id: UUID, _ value: FHIRValue, expectedVersion: Int) async throws -> FHIRResource {
        let staff = ctx.staff
        let patient = try await req.audited(.update, objectType: "Patient", objectID: id.uuidString, patientID: id) {
            let registry = PatientRegistry(db: req.db, clinicID: staff.clinicID)
            let current: Patient
            do { current = try await registry.find(id) } catch { throw FHIRError(.notFound, code: "not-found", "Patient/\(id.fhirID) is not known") }
            guard current.version == expectedVersion else {
                throw FHIRError(.preconditionFailed, code: "conflict", "Patient/\(id.fhirID) is at version \(current.version), not \(expectedVersion): read it again")
            }
            let input = try await patientInput(value, keeping: current)
            let now = req.dermis.clock.now()
            var patient = try await registry.update(id, with: input.details, expectedVersion: expectedVersion, by: staff.userID, at: now)
            try await saveIdentifiers(input.identifiers, for: id, at: now)
            if patient.archived == input.active {
                patient = try await registry.setArchived(id, !input.active, expectedVersion: patient.version, by: staff.userID, at: now)
            }
            return patient
        }
        return try await ctx.store.patients([patient])[0]
    }

    /// Adds the identifiers not yet stored; one another patient of the clinic holds is a 409.
    func saveIdentifiers(_ identifiers: [(system: String, value: String)], for patientID: UUID, at now: Date) async throws {
        for (system, value) in identifiers {
            if let holder = try await PatientIdentifier.query(on: req.db).filter(\.$clinicID == ctx.staff.clinicID)
                .filter(\.$system == system).filter(\.$value == value).first() {
                guard holder.$patient.id == patientID else {
                    throw FHIRError(.conflict, code: "duplicate", "Another patient already has identifier \(system)|\(value)", expression: "Patient.identifier")
                }
                continue
            }
            let row = PatientIdentifier(clinicID: ctx.staff.clinicID, patientID: patientID, system: system, value: value, at: now)
            do {
                try await Writes.savepoint(req.db) { db in try await row.create(on: db) }
            } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
                throw FHIRError(.conflict, code: "duplicate", "Another patient already has identifier \(system)|\(value)", expression: "Patient.identifier")
            }
        }
    }

    // MARK: Appointment

    /// Who and what: the patient, practitioner and location participants, the service (serviceType), the zones
    /// (treatment-zone extensions), the start.
    func appointmentInput(_ value: FHIRValue) throws -> AppointmentAPIController.CreateInput {
        var input = AppointmentAPIController.CreateInput()
        for (i, participant) in (value["participant"]?.arrayValue ?? []).enumerated() {
            guard let reference = participant["actor"]?["reference"]?.stringValue else { continue }
            let parts = reference.split(separator: "/").suffix(2).map(String.init)
            guard parts.count == 2, let id = UUID(uuidString: parts[1]) else {
                throw InvalidInput(path: "Appointment.participant[\(i)].actor.reference", problem: "'\(reference)' is not a reference such as Patient/<id>")
            }
            switch parts[0] {
            case "Patient": input.patient = id
            case "Practitioner": input.practitioner = id
            case "Location": input.location = id
            case "Device": break  // the pen is chosen by the booking rules
            default:
                throw InvalidInput(path: "Appointment.participant[\(i)].actor.reference", problem: "must be a Patient, Practitioner, Location or Device")
            }
        }
        guard let service = value["serviceType"]?[0]?["coding"]?.arrayValue?.first(where: { $0["system"]?.stringValue == FHIRNames.service })?["code"]?.stringValue else {
            throw InvalidInput(path: "Appointment.serviceType", problem: "give the service as a coding with system \(FHIRNames.service) (see HealthcareService)")
        }
        input.service = service
        guard let startText = value["start"]?.stringValue, let start = FHIRTime.dateTime(startText) else {
            throw InvalidInput(path: "Appointment.start", problem: "give the start as an instant with its zone, e.g. 2026-12-02T10:00:00Z")
        }
        input.start = start
        var zones: [String] = []
        for (i, ext) in (value["extension"]?.arrayValue ?? []).enumerated() where ext["url"]?.stringValue == FHIRNames.treatmentZone {
            guard let zone = ext["valueCodeableConcept"]?["coding"]?.arrayValue?.first(where: { $0["system"]?.stringValue == FHIRNames.zone })?["code"]?.stringValue else {
                throw InvalidInput(path: "Appointment.extension[\(i)]", problem: "a treatment zone is a coding with system \(FHIRNames.zone)")
            }
            zones.append(zone)
        }
        input.zones = zones
        input.notes = value["comment"]?.stringValue
        return input
    }

    func createAppointment(_ value: FHIRValue) async throws -> FHIRResource {
        let status = value["status"]?.stringValue ?? "booked"
        guard ["booked", "proposed", "pending"].contains(status) else {
            throw InvalidInput(path: "Appointment.status", problem: "a new appointment is booked (or proposed/pending, which book it), not \(status)")
        }
        let input = try appointmentInput(value)
        let scheduling = SchedulingService(req: req, clinicID: ctx.staff.clinicID)
        let booking: SchedulingService.Booking
        do {
            booking = try await AppointmentAPIController.booking(input, req, scheduling)
        } catch let error as DomainError {
            throw FHIRError(.unprocessableEntity, code: "invalid", "Appointment.participant: \(error.reason)", expression: "Appointment.participant")
        }
        do {
            let appointment = try await req.audited(.create, objectType: "Appointment", patientID: booking.patientID,
                                                    subject: { (a: Appointment) in a.$patient.id }) {
                try await scheduling.book(booking, by: ctx.staff.userID)
            }
            return try await ctx.store.appointments([appointment])[0]
        } catch let conflict as SchedulingService.Conflict {
            throw Self.conflict(conflict, scheduling)
        }
    }

    static func conflict(_ conflict: SchedulingService.Conflict, _ scheduling: SchedulingService) -> FHIRError {
        let next = conflict.alternatives.prefix(5).map { FHIRTime.instant($0.start) }.joined(separator: ", ")
        return FHIRError(.conflict, code: "conflict", conflict.message + (next.isEmpty ? "" : " Next free starts: \(next)."), expression: "Appointment.start")
    }

    static let dermisStatus: [String: AppointmentStatus] = [
        "pending": .pending, "booked": .booked, "arrived": .checkedIn, "checked-in": .checkedIn, "fulfilled": .completed,
        "noshow": .noShow, "cancelled": .cancelled,
    ]

    func updateAppointment(_ id: UUID, _ value: FHIRValue, expectedVersion: Int) async throws -> FHIRResource {
        let scheduling = SchedulingService(req: req, clinicID: ctx.staff.clinicID)
        guard let appointment = try await Appointment.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == ctx.staff.clinicID).first() else {
            throw FHIRError(.notFound, code: "not-found", "Appointment/\(id.fhirID) is not known")
        }
        guard appointment.version == expectedVersion else {
            throw FHIRError(.preconditionFailed, code: "conflict", "Appointment/\(id.fhirID) is at version \(appointment.version), not \(expectedVersion): read it again")
        }
        guard let statusText = value["status"]?.stringValue, let status = Self.dermisStatus[statusText] else {
            throw InvalidInput(path: "Appointment.status", problem: "must be one of \(Self.dermisStatus.keys.sorted().joined(separator: ", "))")
        }
        guard let startText = value["start"]?.stringValue, let start = FHIRTime.dateTime(startText) else {
            throw InvalidInput(path: "Appointment.start", problem: "give the start as an instant with its zone")
        }
        // What else an update may not change: who, where and what (book anew for that).
        let input = try appointmentInput(value)
        if let patient = input.patient, patient != appointment.$patient.id {
            throw InvalidInput(path: "Appointment.participant", problem: "the patient of a booking does not change; cancel it and book anew")
        }
        if let location = input.location, location != appointment.$location.id {
            throw InvalidInput(path: "Appointment.participant", problem: "the location of a booking does not change; cancel it and book anew")
        }
        do {
            let updated = try await req.audited(.update, objectType: "Appointment", objectID: id.uuidString, patientID: appointment.$patient.id) {
                var current = appointment
                let moved = abs(start.timeIntervalSince(appointment.startsAt)) >= 1
                    || (input.practitioner != nil && input.practitioner != appointment.practitionerID)
                if moved {
                    current = try await scheduling.move(current, to: start, practitionerID: input.practitioner, expectedVersion: current.version)
                }
                if current.appointmentStatus != status {
                    current = try await scheduling.setStatus(current, to: status, expectedVersion: current.version)
                }
                return current
            }
            return try await ctx.store.appointments([updated])[0]
        } catch let conflict as SchedulingService.Conflict {
            throw Self.conflict(conflict, scheduling)
        }
    }
}
