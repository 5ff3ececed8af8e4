import DermisCore
import Fluent
import FluentSQL
import Foundation
import SQLKit
import Vapor

/// Loads one clinic's records as FHIR resources. Every query is scoped to the clinic, so another clinic's ids are
/// simply not found. Patient-linked records are reached through their patient's clinic.
struct FHIRStore {
    let db: any Database
    let clinicID: UUID
    let p: ClinicalProtocol
    /// Where the server is, as the client reached it (for absolute URLs in Media).
    let origin: String

    /// The resource types served, in the order the CapabilityStatement lists them.
    static let types = ["Patient", "Group", "Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService", "Schedule",
                        "Appointment", "Questionnaire", "QuestionnaireResponse", "RiskAssessment", "CarePlan", "Consent", "Device",
                        "Procedure", "Observation", "AdverseEvent", "Media", "Provenance"]
    /// Clinical content: front desk sees demographics and bookings, never these (docs/SECURITY.md R2).
    static let clinicalTypes: Set<String> = ["QuestionnaireResponse", "RiskAssessment", "CarePlan", "Consent", "Procedure", "Observation",
                                             "AdverseEvent", "Media", "Provenance"]
    /// Types whose every version is kept (vread, `_history`).
    static let versionedTypes: Set<String> = ["Patient", "Appointment", "Procedure"]

    /// Whether a patient of this clinic; the FHIR answer for another clinic's or a made-up id is 404.
    func patientExists(_ id: UUID) async throws -> Bool {
        try await Patient.query(on: db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).count() > 0
    }

    /// Patient-linked rows of this clinic (optionally of some patients).
    private func scoped<M: Model>(_ query: QueryBuilder<M>, patients: [UUID]?) -> QueryBuilder<M> {
        let clinic: SQLQueryString = "\(ident: "patient_id") IN (SELECT \(ident: "id") FROM \(ident: "patient") WHERE \(ident: "clinic_id") = \(bind: clinicID))"
        guard let patients else { return query.filter(.sql(embed: clinic)) }
        // Each row's own patient checked by its key: not the clinic's whole id list per batch (quadratic in an export).
        let list = SQLList(patients.map { SQLBind($0) })
        return query.filter(.sql(embed: """
            \(ident: M.schema).\(ident: "patient_id") IN (\(list)) AND EXISTS (SELECT 1 FROM \(ident: "patient") AS \(ident: "owner")
            WHERE \(ident: "owner").\(ident: "id") = \(ident: M.schema).\(ident: "patient_id") AND \(ident: "owner").\(ident: "clinic_id") = \(bind: clinicID))
            """))
    }

    /// One patient's, or all (nil).
    func all(_ type: String, patient: UUID?, id: UUID? = nil) async throws -> [FHIRResource] {
        try await all(type, patients: patient.map { [$0] }, id: id)
    }

    // MARK: All of a type (optionally one patient's)

    /// Every resource of `type` (one patient's when `patient` is given), unfiltered; search filters them.
    /// `Patient` is not loaded this way (its search is SQL: `FHIRPatientSearch`).
    func all(_ type: String, patients: [UUID]?, id: UUID? = nil) async throws -> [FHIRResource] {
        if let patients, patients.isEmpty { return [] }
        let patient = patients?.first
        switch type {
        case "Patient":
            var query = Patient.query(on: db).filter(\.$clinic.$id == clinicID)
            if let patients { query = query.filter(\.$id ~~ patients) }
            if let id { query = query.filter(\.$id == id) }
            return try await self.patients(query.all())
        case "Group":
            guard patient == nil else { return [] }
            return try await groups()
        case "Organization":
            guard patient == nil, let clinic = try await Clinic.find(clinicID, on: db) else { return [] }
            return [try FHIRMapping.organization(clinic)]
        case "Location":
            guard patient == nil else { return [] }
            return try await Location.query(on: db).filter(\.$clinic.$id == clinicID).all().map(FHIRMapping.location)
        case "Practitioner", "PractitionerRole", "Schedule":
            guard patient == nil else { return [] }
            let staff = try await StaffUser.query(on: db).filter(\.$clinic.$id == clinicID).sort(\.$name).all()
            if type == "Practitioner" { return try staff.map(FHIRMapping.practitioner) }
            let ids = try staff.map { try $0.requireID() }
            let hours = ids.isEmpty ? [] : try await WorkingHours.query(on: db).filter(\.$staff.$id ~~ ids).all()
            if type == "Schedule" {
                return try staff.filter { s in hours.contains { $0.$staff.id == s.id } }
                    .map { s in try FHIRMapping.schedule(s, hours: hours.filter { $0.$staff.id == s.id }) }
            }
            let qualifications = ids.isEmpty ? [] : try await ServiceQualification.query(on: db).filter(\.$staff.$id ~~ ids).all()
            return try staff.map { s in
                try FHIRMapping.practitionerRole(s, locations: Array(Set(hours.filter { $0.$staff.id == s.id }.map(\.$location.id))),
                                                 services: qualifications.filter { $0.$staff.id == s.id }.map(\.$service.id))
            }
        case "HealthcareService":
            guard patient == nil else { return [] }
            return try await Service.query(on: db).filter(\.$clinic.$id == clinicID).sort(\.$code).all().map(FHIRMapping.healthcareService)
        case "Device":
            guard patient == nil else { return [] }
            let pens = try await Device.query(on: db).filter(\.$clinic.$id == clinicID).all().map(FHIRMapping.pen)
            let lots = try await CartridgeLot.query(on: db).filter(\.$clinic.$id == clinicID).all().map(FHIRMapping.lot)
            return pens + lots
        case "Questionnaire":
            return patient == nil ? [FHIRMapping.intakeQuestionnaire(p: p)] : []
        case "Appointment":
            var query = Appointment.query(on: db).filter(\.$clinic.$id == clinicID)
            if let patients { query = query.filter(\.$patient.$id ~~ patients) }
            if let id { query = query.filter(\.$id == id) }
            return try await appointments(query.sort(\.$startsAt).all())
        case "QuestionnaireResponse":
            var query = scoped(IntakeRecord.query(on: db), patients: patients)
            if let id { query = query.filter(\.$id == id) }
            return try await query.sort(\.$createdAt).all().map { try FHIRMapping.questionnaireResponse($0, p: p) }
        case "RiskAssessment":
            var query = scoped(ScreeningRecord.query(on: db), patients: patients)
            if let id { query = query.filter(\.$id == id) }
            let screenings = try await query.sort(\.$createdAt).all()
            let ids = try screenings.map { try $0.requireID() }
            let overrides = ids.isEmpty ? [] : try await ScreeningOverride.query(on: db).filter(\.$screening.$id ~~ ids).sort(\.$at).all()
            return try screenings.map { s in try FHIRMapping.riskAssessment(s, overrides: overrides.filter { $0.$screening.id == s.id }) }
        case "CarePlan":
            var query = scoped(TreatmentPlanRecord.query(on: db), patients: patients)
            if let id { query = query.filter(\.$id == id) }
            let plans = try await query.sort(\.$createdAt).all()
            let latest = try await latestPlans(for: Set(plans.map(\.$patient.id)))
            return try plans.map { try FHIRMapping.carePlan($0, latest: latest[$0.$patient.id] == $0.id, p: p) }
        case "Consent":
            var query = scoped(ConsentRecord.query(on: db), patients: patients)
            if let id { query = query.filter(\.$id == id) }
            let consents = try await query.sort(\.$signedAt).all()
            let templateIDs = Array(Set(consents.map(\.$template.id)))
            let templates = templateIDs.isEmpty ? [] : try await ConsentTemplate.query(on: db).filter(\.$id ~~ templateIDs).all()
            return try consents.map { c in try FHIRMapping.consent(c, template: templates.first { $0.id == c.$template.id }, clinicID: clinicID) }
        case "Procedure", "Provenance":
            var query = scoped(TreatmentSession.query(on: db), patients: patients).filter(\.$status == "signed")
            if let id { query = query.filter(\.$chartID == id) }
            let sessions = try await query.sort(\.$chartID).sort(\.$version).all()
            if type == "Provenance" { return sessions.compactMap(FHIRMapping.provenance) }
            // The latest signed version of each chart.
            var latest: [UUID: TreatmentSession] = [:]
            for s in sessions where (latest[s.chartID]?.version ?? 0) < s.version { latest[s.chartID] = s }
            return try latest.values.sorted { ($0.signedAt ?? $0.createdAt) < ($1.signedAt ?? $1.createdAt) }
                .flatMap { try FHIRMapping.procedures($0, p: p) }
        case "Observation":
            var scores = scoped(OutcomeScore.query(on: db), patients: patients)
            var checkIns = scoped(CheckIn.query(on: db), patients: patients)
            if let id { scores = scores.filter(\.$id == id); checkIns = checkIns.filter(\.$id == id) }
            return try await scores.sort(\.$recordedAt).all().map { try FHIRMapping.observation($0, p: p) }
                + checkIns.sort(\.$submittedAt).all().map { try FHIRMapping.checkInObservation($0, p: p) }
        case "AdverseEvent":
            var query = AdverseEvent.query(on: db).filter(\.$clinic.$id == clinicID)
            if let patients { query = query.filter(\.$patient.$id ~~ patients) }
            if let id { query = query.filter(\.$id == id) }
            return try await query.sort(\.$openedAt).all().map { try FHIRMapping.adverseEvent($0, p: p) }
        case "Media":
            var query = scoped(Photo.query(on: db), patients: patients)
            if let id { query = query.filter(\.$id == id) }
            return try await query.sort(\.$uploadedAt).all().map { try FHIRMapping.media($0, base: origin, p: p) }
        default:
            return []
        }
    }

    /// One Group per location: the patients booked there (what a Group-level export exports).
    func groups() async throws -> [FHIRResource] {
        guard let sql = db as? any SQLDatabase else { return [] }
        var resources: [FHIRResource] = []
        for location in try await Location.query(on: db).filter(\.$clinic.$id == clinicID).sort(\.$name).all() {
            let id = try location.requireID()
            let count = try await sql.raw("SELECT COUNT(DISTINCT patient_id) AS n FROM appointment WHERE location_id = \(bind: id) AND patient_id IS NOT NULL")
                .first()?.decode(column: "n", as: Int.self) ?? 0
            resources.append(FHIRResource("Group", id: id.fhirID, lastUpdated: Date(timeIntervalSince1970: 0), body: [
                "active": .bool(location.active),
                "type": "person",
                "actual": true,
                "name": .string("Patients booked at \(location.name)"),
                "quantity": .int(count),
                "managingEntity": FHIRMapping.ref("Organization", clinicID),
            ], index: ["name": [.string(location.name)]]))
        }
        return resources
    }

    /// The patients of a Group (a location), by id from `after`, `limit` at a time.
    func groupMembers(_ locationID: UUID, after: UUID?, limit: Int) async throws -> [UUID] {
        guard let sql = db as? any SQLDatabase else { return [] }
        // After the first batch, from the last id seen (a made-up zero id sorts first on both databases).
        let from = after ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        let rows = try await sql.raw("""
            SELECT DISTINCT patient_id FROM appointment WHERE clinic_id = \(bind: clinicID) AND location_id = \(bind: locationID)
            AND patient_id IS NOT NULL AND (patient_id > \(bind: from) OR \(bind: after == nil)) ORDER BY patient_id LIMIT \(unsafeRaw: String(limit))
            """).all()
        return try rows.map { try $0.decode(column: "patient_id", as: UUID.self) }
    }

    private func latestPlans(for patients: Set<UUID>) async throws -> [UUID: UUID] {
        guard !patients.isEmpty else { return [:] }
        var latest: [UUID: (Int, UUID)] = [:]
        for plan in try await TreatmentPlanRecord.query(on: db).filter(\.$patient.$id ~~ Array(patients)).all() {
            if (latest[plan.$patient.id]?.0 ?? 0) < plan.version, let id = plan.id { latest[plan.$patient.id] = (plan.version, id) }
        }
        return latest.mapValues(\.1)
    }

    func patients(_ rows: [Patient]) async throws -> [FHIRResource] {
        let ids = try rows.map { try $0.requireID() }
        let identifiers = ids.isEmpty ? [] : try await PatientIdentifier.query(on: db).filter(\.$patient.$id ~~ ids).all()
        let byPatient = Dictionary(grouping: identifiers, by: \.$patient.id)
        return try rows.map { try FHIRMapping.patient($0, identifiers: byPatient[$0.id!] ?? []) }
    }

    func appointments(_ rows: [Appointment]) async throws -> [FHIRResource] {
        let serviceIDs = Array(Set(rows.map(\.$service.id)))
        let services = serviceIDs.isEmpty ? [] : try await Service.query(on: db).filter(\.$id ~~ serviceIDs).all()
        return try rows.map { a in try FHIRMapping.appointment(a, service: services.first { $0.id == a.$service.id }, p: p) }
    }

    // MARK: One

    /// One resource by id, or nil (unknown, malformed or another clinic's id).
    func read(_ type: String, _ id: String) async throws -> FHIRResource? {
        if type == "Questionnaire" { return id == "intake" ? FHIRMapping.intakeQuestionnaire(p: p) : nil }
        if type == "Procedure", id.count > 37, let chart = UUID(uuidString: String(id.prefix(36))) {
            return try await all(type, patient: nil, id: chart).first { $0.id == id }
        }
        if type == "Provenance", let dash = id.range(of: "-v", options: .backwards), let chart = UUID(uuidString: String(id[..<dash.lowerBound])) {
            return try await all(type, patient: nil, id: chart).first { $0.id == id }
        }
        guard let uuid = UUID(uuidString: id), id == uuid.fhirID || id == uuid.uuidString else { return nil }
        switch type {
        case "Organization", "Location", "Practitioner", "PractitionerRole", "Schedule", "HealthcareService", "Device":
            return try await all(type, patient: nil).first { $0.id == uuid.fhirID }
        default:
            return try await all(type, patient: nil, id: uuid).first { $0.id == uuid.fhirID }
        }
    }

    /// Every kept version of one resource, newest first; nil when the type keeps none, empty when there is no such resource.
    func history(_ type: String, _ id: String) async throws -> [FHIRResource]? {
        guard Self.versionedTypes.contains(type) else { return nil }
        guard let uuid = UUID(uuidString: id) else { return [] }
        switch type {
        case "Patient":
            return try await patients(ResourceHistory.versions(of: Patient.self, id: uuid, clinicID: clinicID, on: db)).reversed()
        case "Appointment":
            return try await appointments(ResourceHistory.versions(of: Appointment.self, id: uuid, clinicID: clinicID, on: db)).reversed()
        default:
            let sessions = try await scoped(TreatmentSession.query(on: db), patients: nil).filter(\.$chartID == uuid).filter(\.$status == "signed")
                .sort(\.$version, .descending).all()
            return try sessions.compactMap { try FHIRMapping.procedures($0, p: p).first }
        }
    }
}
