import DermisCore
import Fluent
import Foundation
import Vapor

/// Dermis records as FHIR R4 resources (../shared/FHIR.md's concept → resource table). Pure functions of the records:
/// loading them is `FHIRStore`'s job.
enum FHIRMapping {
    static func ref(_ type: String, _ id: UUID?, display: String? = nil) -> FHIRValue? {
        guard let id else { return nil }
        return ["reference": .string("\(type)/\(id.fhirID)"), "display": display.map(FHIRValue.string)]
    }

    static func coding(_ system: String, _ code: String, _ display: String? = nil) -> FHIRValue {
        ["system": .string(system), "code": .string(code), "display": display.map(FHIRValue.string)]
    }

    static func concept(_ system: String, _ code: String, _ display: String? = nil, text: String? = nil) -> FHIRValue {
        ["coding": [coding(system, code, display)], "text": (text ?? display).map(FHIRValue.string)]
    }

    static func bodySite(_ zone: String, _ p: ClinicalProtocol) -> FHIRValue {
        guard let z = p.zones.first(where: { $0.id == zone }) else { return ["text": .string(zone)] }
        return ["coding": [coding(z.bodySite.system, z.bodySite.code, z.bodySite.display), coding(FHIRNames.zone, z.id, z.displayName)],
                "text": .string(z.displayName)]
    }

    static func date(_ d: CalendarDate) -> FHIRValue { .string(d.description) }

    // MARK: Administration

    static func organization(_ clinic: Clinic) throws -> FHIRResource {
        let id = try clinic.requireID()
        return FHIRResource("Organization", id: id.fhirID, lastUpdated: clinic.createdAt ?? Date(timeIntervalSince1970: 0), body: [
            "active": true,
            "type": [concept("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
            "name": .string(clinic.name),
        ], index: ["name": [.string(clinic.name)]])
    }

    static func location(_ l: Location) throws -> FHIRResource {
        FHIRResource("Location", id: try l.requireID().fhirID, lastUpdated: Date(timeIntervalSince1970: 0), body: [
            "status": l.active ? "active" : "inactive",
            "name": .string(l.name),
            "mode": "instance",
            "telecom": l.phone.isEmpty ? nil : [["system": "phone", "value": .string(l.phone)]],
            "address": l.address.isEmpty ? nil : ["text": .string(l.address)],
            "managingOrganization": ref("Organization", l.$clinic.id),
        ], index: ["name": [.string(l.name)], "status": [.token(system: nil, code: l.active ? "active" : "inactive")],
                   "organization": [.reference("Organization/\(l.$clinic.id.fhirID)")]])
    }

    static func practitioner(_ s: StaffUser) throws -> FHIRResource {
        let id = try s.requireID()
        let parts = s.name.split(separator: " ").map(String.init)
        return FHIRResource("Practitioner", id: id.fhirID, lastUpdated: s.createdAt, body: [
            "active": .bool(s.active),
            "name": [["text": .string(s.name), "family": parts.count > 1 ? .string(parts.last!) : nil,
                      "given": parts.count > 1 ? .array(parts.dropLast().map(FHIRValue.string)) : nil]],
            "telecom": [["system": "email", "value": .string(s.email), "use": "work"]],
            "qualification": s.credential.map { credential in
                [["code": ["text": .string(credential)]]]
            },
        ], index: ["name": [.string(s.name)], "active": [.token(system: nil, code: s.active ? "true" : "false")],
                   "email": [.token(system: nil, code: s.email)]])
    }

    static func practitionerRole(_ s: StaffUser, locations: [UUID], services: [UUID]) throws -> FHIRResource {
        let id = try s.requireID()
        let role = StaffRole(rawValue: s.role)
        return FHIRResource("PractitionerRole", id: id.fhirID, lastUpdated: s.createdAt, body: [
            "active": .bool(s.active),
            "practitioner": ref("Practitioner", id, display: s.name),
            "organization": ref("Organization", s.$clinic.id),
            "code": [concept(FHIRNames.staffRole, s.role, role?.displayName)],
            "location": .list(locations.compactMap { ref("Location", $0) }),
            "healthcareService": .list(services.compactMap { ref("HealthcareService", $0) }),
        ], index: ["practitioner": [.reference("Practitioner/\(id.fhirID)")], "active": [.token(system: nil, code: s.active ? "true" : "false")],
                   "role": [.token(system: FHIRNames.staffRole, code: s.role)],
                   "location": locations.map { .reference("Location/\($0.fhirID)") }])
    }

    static func healthcareService(_ s: Service) throws -> FHIRResource {
        FHIRResource("HealthcareService", id: try s.requireID().fhirID, lastUpdated: Date(timeIntervalSince1970: 0), body: [
            "active": true,
            "providedBy": ref("Organization", s.$clinic.id),
            "type": [concept(FHIRNames.service, s.code, s.name)],
            "name": .string(s.name),
            "comment": s.minutes.map { .string("\($0) minutes, \(s.bufferMinutes) minutes between bookings") }
                ?? .string("Length from the zones treated; \(s.bufferMinutes) minutes between bookings"),
            "appointmentRequired": true,
        ], index: ["name": [.string(s.name)], "service-type": [.token(system: FHIRNames.service, code: s.code)]])
    }

    /// One practitioner's bookable time: their weekly hours at each location.
    static func schedule(_ s: StaffUser, hours: [WorkingHours]) throws -> FHIRResource {
        let id = try s.requireID()
        let locations = Array(Set(hours.map(\.$location.id))).sorted { $0.uuidString < $1.uuidString }
        let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func clock(_ minute: Int) -> String { String(format: "%02d:%02d", minute / 60, minute % 60) }
        let comment = hours.filter { $0.kind == "hours" }.sorted { ($0.weekday, $0.startMinute) < ($1.weekday, $1.startMinute) }
            .map { "\(weekdays[($0.weekday % 7 + 7) % 7]) \(clock($0.startMinute))–\(clock($0.endMinute))" }.joined(separator: "; ")
        return FHIRResource("Schedule", id: id.fhirID, lastUpdated: s.createdAt, body: [
            "active": .bool(s.active),
            "actor": .array([ref("Practitioner", id, display: s.name)!] + locations.compactMap { ref("Location", $0) }),
            "comment": comment.isEmpty ? nil : .string(comment),
        ], index: ["actor": [.reference("Practitioner/\(id.fhirID)")] + locations.map { .reference("Location/\($0.fhirID)") },
                   "active": [.token(system: nil, code: s.active ? "true" : "false")]])
    }

    static func pen(_ d: Device) throws -> FHIRResource {
        FHIRResource("Device", id: try d.requireID().fhirID, lastUpdated: d.createdAt, body: [
            "status": d.active ? "active" : "inactive",
            "serialNumber": .string(d.serial),
            "deviceName": [["name": .string(d.model), "type": "model-name"]],
            "type": ["text": "Microneedling pen"],
            "owner": ref("Organization", d.$clinic.id),
            "location": ref("Location", d.$location.id),
            "note": [["text": .string("Pen profile: \(d.profile)")]],
        ], index: ["status": [.token(system: nil, code: d.active ? "active" : "inactive")], "type": [.string("pen")]])
    }

    static func lot(_ l: CartridgeLot) throws -> FHIRResource {
        let recalled = l.recalledAt != nil
        return FHIRResource("Device", id: try l.requireID().fhirID, lastUpdated: l.recalledAt ?? l.receivedAt, body: [
            "status": recalled ? "inactive" : "active",
            "statusReason": recalled ? [["text": .string("Recalled: \(l.recallReason ?? "")")]] : nil,
            "lotNumber": .string(l.lotNumber),
            "expirationDate": CalendarDate(iso: l.expiry).map(date) ?? (l.expiry.count == 7 ? .string(l.expiry) : nil),
            "type": ["text": .string("Needle cartridge, \(l.needleCount) needles")],
            "owner": ref("Organization", l.$clinic.id),
            "note": [["text": .string("\(l.quantityRemaining) of \(l.quantityReceived) left")]],
        ], index: ["status": [.token(system: nil, code: recalled ? "inactive" : "active")], "type": [.string("cartridge")]])
    }

    // MARK: Patient and booking

    static func patient(_ p: Patient, identifiers: [PatientIdentifier] = []) throws -> FHIRResource {
        let id = try p.requireID()
        var ids: [FHIRValue] = [[
            "use": "usual",
            "type": concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
            "system": .string(FHIRNames.mrn), "value": .string(p.mrn), "assigner": ref("Organization", p.$clinic.id),
        ]]
        ids += identifiers.map { ["use": "secondary", "system": .string($0.system), "value": .string($0.value)] }
        var telecom: [FHIRValue] = []
        if let phone = p.phoneE164 { telecom.append(["system": "phone", "value": .string(phone), "use": "mobile"]) }
        if let email = p.email { telecom.append(["system": "email", "value": .string(email)]) }
        var tokens: [SearchValue] = [.token(system: FHIRNames.mrn, code: p.mrn)]
        tokens += identifiers.map { .token(system: $0.system, code: $0.value) }
        return FHIRResource("Patient", id: id.fhirID, version: p.version, lastUpdated: p.updatedAt, patient: id, body: [
            "identifier": .array(ids),
            "active": .bool(!p.archived),
            "name": [["use": "official", "family": .string(p.familyName), "given": [.string(p.givenName)]]],
            "telecom": .list(telecom),
            "birthDate": .string(p.dateOfBirth),
            "managingOrganization": ref("Organization", p.$clinic.id),
        ], index: ["identifier": tokens, "birthdate": CalendarDate(iso: p.dateOfBirth).flatMap(DateRange.day).map { [.date($0)] } ?? [],
                   "name": [.string(p.givenName), .string(p.familyName)], "given": [.string(p.givenName)], "family": [.string(p.familyName)],
                   "active": [.token(system: nil, code: p.archived ? "false" : "true")]])
    }

    /// Dermis's statuses in FHIR's Appointment status set.
    static let appointmentStatus: [AppointmentStatus: String] = [
        .pending: "pending", .booked: "booked", .checkedIn: "checked-in", .completed: "fulfilled", .noShow: "noshow",
        .cancelled: "cancelled", .expired: "cancelled",
    ]

    static func appointment(_ a: Appointment, service: Service?, p: ClinicalProtocol) throws -> FHIRResource {
        let id = try a.requireID()
        let status = a.appointmentStatus.flatMap { appointmentStatus[$0] } ?? "proposed"
        var participants: [FHIRValue] = []
        if let patient = a.$patient.id {
            participants.append(["actor": ref("Patient", patient, display: a.contactName), "required": "required", "status": "accepted"])
        }
        participants.append(["type": [concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                             "actor": ref("Practitioner", a.practitionerID), "required": "required", "status": "accepted"])
        participants.append(["actor": ref("Location", a.$location.id), "required": "required", "status": "accepted"])
        if let pen = a.penID { participants.append(["actor": ref("Device", pen), "required": "required", "status": "accepted"]) }
        let minutes = Int(a.endsAt.timeIntervalSince(a.startsAt) / 60)
        return FHIRResource("Appointment", id: id.fhirID, version: a.version, lastUpdated: a.updatedAt, patient: a.$patient.id, body: [
            "extension": .list(a.zoneList.map { zone in
                ["url": .string(FHIRNames.treatmentZone), "valueCodeableConcept": bodySite(zone, p)]
            }),
            "status": .string(status),
            "cancelationReason": a.appointmentStatus == .expired ? ["text": "The hold lapsed unconfirmed"] : nil,
            "serviceType": service.map { [concept(FHIRNames.service, $0.code, $0.name)] },
            "description": service.map { .string($0.name) },
            "start": .instant(a.startsAt),
            "end": .instant(a.endsAt),
            "minutesDuration": minutes > 0 ? .int(minutes) : nil,
            "created": .string(FHIRTime.instant(a.createdAt)),
            "comment": a.notes.isEmpty ? nil : .string(a.notes),
            "participant": .array(participants),
        ], index: [
            "date": [.date(DateRange(lo: a.startsAt, hi: a.endsAt))], "status": [.token(system: nil, code: status)],
            "practitioner": [.reference("Practitioner/\(a.practitionerID.fhirID)")],
            "location": [.reference("Location/\(a.$location.id.fhirID)")],
            "actor": [.reference("Practitioner/\(a.practitionerID.fhirID)"), .reference("Location/\(a.$location.id.fhirID)")]
                + (a.$patient.id.map { [.reference("Patient/\($0.fhirID)")] } ?? []),
            "service-type": service.map { [.token(system: FHIRNames.service, code: $0.code)] } ?? [],
        ])
    }

    // MARK: Intake and screening

    static func questionnaireResponse(_ r: IntakeRecord, p: ClinicalProtocol) throws -> FHIRResource {
        let id = try r.requireID()
        let intake = try r.intake
        func zones(_ list: [String]?) -> [FHIRValue] { (list ?? []).map { ["valueCoding": coding(FHIRNames.zone, $0)] } }
        var items: [FHIRValue] = [
            ["linkId": "dateOfBirth", "answer": [["valueDate": date(intake.dateOfBirth)]]],
            ["linkId": "fitzpatrickType", "answer": [["valueInteger": .int(intake.fitzpatrickType)]]],
            ["linkId": "pregnant", "answer": [["valueBoolean": .bool(intake.pregnant)]]],
            ["linkId": "nursing", "answer": [["valueBoolean": .bool(intake.nursing)]]],
        ]
        if !intake.treatmentZones.isEmpty { items.append(["linkId": "treatmentZones", "answer": .array(zones(intake.treatmentZones))]) }
        for condition in intake.conditions {
            items.append(["linkId": "condition", "item": .array([["linkId": "condition.code", "answer": [["valueCoding": coding(FHIRNames.screeningRule, condition.code)]]]]
                + (condition.zones.map { [["linkId": "condition.zones", "answer": .array(zones($0))]] } ?? []))])
        }
        for medication in intake.medications {
            var parts: [FHIRValue] = [["linkId": "medication.code", "answer": [["valueCoding": coding(FHIRNames.screeningRule, medication.code)]]]]
            if let last = medication.lastDose { parts.append(["linkId": "medication.lastDose", "answer": [["valueDate": date(last)]]]) }
            if let current = medication.current { parts.append(["linkId": "medication.current", "answer": [["valueBoolean": .bool(current)]]]) }
            items.append(["linkId": "medication", "item": .array(parts)])
        }
        if !intake.allergies.isEmpty { items.append(["linkId": "allergies", "answer": .array(intake.allergies.map { ["valueString": .string($0)] })]) }
        for procedure in intake.recentProcedures {
            items.append(["linkId": "recentProcedure", "item": .array([
                ["linkId": "recentProcedure.kind", "answer": [["valueCoding": coding(FHIRNames.screeningRule, procedure.kind)]]],
                ["linkId": "recentProcedure.date", "answer": [["valueDate": date(procedure.date)]]],
            ] + (procedure.zones.map { [["linkId": "recentProcedure.zones", "answer": .array(zones($0))]] } ?? []))])
        }
        return FHIRResource("QuestionnaireResponse", id: id.fhirID, lastUpdated: r.createdAt, patient: r.$patient.id, body: [
            "questionnaire": .string(FHIRNames.intakeQuestionnaire),
            "status": "completed",
            "subject": ref("Patient", r.$patient.id),
            "authored": .instant(r.createdAt),
            // The patient's own answers, given at home: the patient wrote and gave them; else the staff member who took them.
            "author": r.source == RecordSource.patientPortal ? ref("Patient", r.$patient.id) : ref("Practitioner", r.createdBy),
            "source": r.source == RecordSource.patientPortal ? ref("Patient", r.$patient.id) : nil,
            "item": .array(items),
        ], index: ["authored": [.date(.instant(r.createdAt))], "status": [.token(system: nil, code: "completed")],
                   "questionnaire": [.reference("Questionnaire/intake")]])
    }

    /// The intake form the QuestionnaireResponses answer.
    static func intakeQuestionnaire(p: ClinicalProtocol) -> FHIRResource {
        let zoneOptions: FHIRValue = .array(p.zones.map { ["valueCoding": coding(FHIRNames.zone, $0.id, $0.displayName)] })
        func item(_ linkId: String, _ text: String, _ type: String, repeats: Bool = false, required: Bool = false,
                  options: FHIRValue? = nil, items: [FHIRValue]? = nil) -> FHIRValue {
            ["linkId": .string(linkId), "text": .string(text), "type": .string(type), "required": required ? true : nil,
             "repeats": repeats ? true : nil, "answerOption": options, "item": items.map(FHIRValue.array)]
        }
        return FHIRResource("Questionnaire", id: "intake", version: 1, lastUpdated: Date(timeIntervalSince1970: 0), body: [
            "url": .string(FHIRNames.intakeQuestionnaire),
            "version": .string(p.version),
            "name": "DermisIntake",
            "title": "Microneedling intake and candidacy screening",
            "status": "active",
            "subjectType": ["Patient"],
            "item": [
                item("dateOfBirth", "Date of birth", "date", required: true),
                item("fitzpatrickType", "Fitzpatrick skin type (1–6)", "integer", required: true),
                item("pregnant", "Pregnant", "boolean", required: true),
                item("nursing", "Breastfeeding", "boolean", required: true),
                item("treatmentZones", "Zones to treat", "choice", repeats: true, options: zoneOptions),
                item("condition", "Condition", "group", repeats: true, items: [
                    item("condition.code", "Condition (protocol rule id)", "choice", required: true),
                    item("condition.zones", "Only in these zones", "choice", repeats: true, options: zoneOptions)]),
                item("medication", "Medication", "group", repeats: true, items: [
                    item("medication.code", "Medication (protocol rule id)", "choice", required: true),
                    item("medication.lastDose", "Last dose", "date"),
                    item("medication.current", "Still taking it", "boolean")]),
                item("allergies", "Allergies", "string", repeats: true),
                item("recentProcedure", "Recent procedure", "group", repeats: true, items: [
                    item("recentProcedure.kind", "Procedure (protocol rule id)", "choice", required: true),
                    item("recentProcedure.date", "Date", "date", required: true),
                    item("recentProcedure.zones", "In these zones", "choice", repeats: true, options: zoneOptions)]),
            ],
        ], index: ["url": [.token(system: nil, code: FHIRNames.intakeQuestionnaire)], "status": [.token(system: nil, code: "active")]])
    }

    /// A screening as a RiskAssessment: the risk that needling now harms this patient, predicted from the intake
    /// (`basis`) by the protocol's rules, each firing rule one prediction with its reason and source.
    static func riskAssessment(_ s: ScreeningRecord, overrides: [ScreeningOverride]) throws -> FHIRResource {
        let id = try s.requireID()
        let result = try s.screening
        let outcomeText: [ScreeningOutcome: String] = [
            .eligible: "Eligible", .eligibleWithPrecautions: "Eligible with precautions", .deferred: "Deferred", .notEligible: "Not eligible",
        ]
        var predictions: [FHIRValue] = [[
            "outcome": concept(FHIRNames.screeningOutcome, result.outcome.rawValue, outcomeText[result.outcome]),
            "whenPeriod": result.until.map { ["end": date($0)] },
            "rationale": result.until.map { .string("Deferred until \($0)") },
        ]]
        for finding in result.reasons + result.precautions {
            predictions.append([
                "outcome": concept(FHIRNames.screeningRule, finding.rule, nil, text: finding.message),
                "qualitativeRisk": ["text": .string(finding.kind ?? "reason")],
                "whenPeriod": finding.until.map { ["end": date($0)] },
                "rationale": .string("\(finding.rationale.map { $0 + " " } ?? "")Source: \(finding.source)"),
            ])
        }
        let notes = overrides.map { o -> FHIRValue in
            ["authorReference": ref("Practitioner", o.by), "time": .instant(o.at),
             "text": .string("Rule \(o.rule) set aside by the practitioner: \(o.reason)")]
        }
        let updated = overrides.map(\.at).max() ?? s.createdAt
        return FHIRResource("RiskAssessment", id: id.fhirID, version: 1 + overrides.count, lastUpdated: updated, patient: s.$patient.id, body: [
            "status": overrides.isEmpty ? "final" : "amended",
            "method": ["text": .string("Dermis screening against protocol \(s.protocolVersion); the practitioner decides")],
            "code": concept(FHIRNames.procedure, "microneedling-candidacy", "Microneedling candidacy screening"),
            "subject": ref("Patient", s.$patient.id),
            "occurrenceDateTime": .string(s.screenedOn),
            // Screened on the patient's own answers from home, nobody performed it but Dermis (a patient is no performer).
            "performer": s.createdBy == s.$patient.id ? nil : ref("Practitioner", s.createdBy),
            "basis": [ref("QuestionnaireResponse", s.$intake.id)!],
            "prediction": .array(predictions),
            "mitigation": result.precautions.isEmpty ? nil : .string(result.precautions.map(\.message).joined(separator: " ")),
            "note": .list(notes),
        ], index: ["date": CalendarDate(iso: s.screenedOn).flatMap(DateRange.day).map { [.date($0)] } ?? [],
                   "status": [.token(system: nil, code: overrides.isEmpty ? "final" : "amended")]])
    }

    // MARK: Plan, consent, procedure

    static func carePlan(_ plan: TreatmentPlanRecord, latest: Bool, p: ClinicalProtocol) throws -> FHIRResource {
        let id = try plan.requireID()
        let result = try plan.plan
        let status = latest ? "active" : "revoked"
        var activities: [FHIRValue] = result.zones.map { zone in
            ["detail": [
                "kind": "ServiceRequest",
                "code": concept(FHIRNames.procedure, "microneedling", "Microneedling (percutaneous collagen induction)"),
                "reasonCode": [concept(FHIRNames.indication, zone.indication)],
                "status": latest ? "scheduled" : "stopped",
                "scheduledTiming": ["repeat": ["count": .int(result.series.sessions), "period": .int(result.series.minIntervalDays), "periodUnit": "d"]],
                "description": .string("\(bodySiteText(zone.zone, p)): \(zone.indication), \(zone.depthMm) mm, \(zone.passes) passes, \(zone.pattern)"
                    + (zone.limitReason.map { " (\($0))" } ?? "")),
            ]]
        }
        for item in result.aftercare {
            activities.append(["detail": [
                "kind": "CommunicationRequest",
                "status": latest ? "scheduled" : "stopped",
                "description": .string("Hours \(item.fromHour)\(item.toHour.map { "–\($0)" } ?? "+") after each session: \(item.instruction) (source: \(item.source))"),
            ]])
        }
        return FHIRResource("CarePlan", id: id.fhirID, lastUpdated: plan.createdAt, patient: plan.$patient.id, body: [
            "status": .string(status),
            "intent": "plan",
            "title": .string("Microneedling series, plan \(plan.version)"),
            "description": .string("\(result.series.sessions) sessions at least \(result.series.minIntervalDays) days apart; "
                + "\(result.downtimeDays.min)–\(result.downtimeDays.max) days of downtime. Protocol \(result.protocolVersion)."),
            "subject": ref("Patient", plan.$patient.id),
            "created": .instant(plan.createdAt),
            "author": ref("Practitioner", plan.createdBy),
            "activity": .list(activities),
        ], index: ["date": [.date(.instant(plan.createdAt))], "status": [.token(system: nil, code: status)]])
    }

    static func bodySiteText(_ zone: String, _ p: ClinicalProtocol) -> String {
        p.zones.first { $0.id == zone }?.displayName ?? zone
    }

    static func consent(_ c: ConsentRecord, template: ConsentTemplate?, clinicID: UUID) throws -> FHIRResource {
        let id = try c.requireID()
        return FHIRResource("Consent", id: id.fhirID, lastUpdated: c.signedAt, patient: c.$patient.id, body: [
            "status": "active",
            "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "treatment", "Treatment"),
            "category": [concept(FHIRNames.loinc, "59284-0", "Patient Consent")],
            "patient": ref("Patient", c.$patient.id),
            "dateTime": .instant(c.signedAt),
            "performer": [ref("Patient", c.$patient.id, display: c.typedName)!],
            "organization": [ref("Organization", clinicID)!],
            "sourceAttachment": [
                "contentType": "image/png",
                "title": .string("\(template?.title ?? "Consent") (version \(template?.version ?? 0)), signed by \(c.typedName)"),
                "creation": .instant(c.signedAt),
            ],
            "policyRule": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in"),
            "provision": ["type": "permit", "data": [["meaning": "related", "reference": ref("CarePlan", c.$plan.id)!]]],
        ], index: ["date": [.date(.instant(c.signedAt))], "status": [.token(system: nil, code: "active")]])
    }

    /// A signed session: the procedure with every zone as a body site, the pen and lot used, and one child Procedure
    /// per zone carrying its depth and passes.
    static func procedures(_ s: TreatmentSession, p: ClinicalProtocol) throws -> [FHIRResource] {
        let chart = s.chartID
        let zones = s.zones
        let when = s.signedAt ?? s.updatedAt
        let code = concept(FHIRNames.procedure, "microneedling", "Microneedling (percutaneous collagen induction)")
        var notes: [FHIRValue] = []
        if !s.notes.isEmpty { notes.append(["text": .string(s.notes)]) }
        if let reason = s.amendmentReason { notes.append(["text": .string("Amended (version \(s.version)): \(reason)")]) }
        if let reason = s.numbingOverrideReason { notes.append(["text": .string("Numbing time overridden: \(reason)")]) }
        let used: [FHIRValue] = [ref("Device", s.$device.id), ref("Device", s.$lot.id)].compactMap { $0 }
        let index: [String: [SearchValue]] = ["date": [.date(.instant(s.anaestheticAppliedAt ?? s.createdAt)), .date(.instant(when))],
                                              "status": [.token(system: nil, code: "completed")],
                                              "performer": [.reference("Practitioner/\(s.practitionerID.fhirID)")],
                                              "code": [.token(system: FHIRNames.procedure, code: "microneedling")],
                                              // Not a search parameter: what $everything follows to the pen and lot.
                                              "used": [s.$device.id, s.$lot.id].compactMap { $0 }.map { .reference("Device/\($0.fhirID)") }]
        let parent = FHIRResource("Procedure", id: chart.fhirID, version: s.version, lastUpdated: when, patient: s.$patient.id, body: [
            "basedOn": [ref("CarePlan", s.$plan.id)!],
            "status": "completed",
            "code": code,
            "subject": ref("Patient", s.$patient.id),
            "performedPeriod": ["start": .instant(s.anaestheticAppliedAt ?? s.createdAt), "end": .instant(when)],
            "recorder": ref("Practitioner", s.signedBy),
            "performer": [["actor": ref("Practitioner", s.practitionerID)!]],
            "bodySite": .list(zones.map { bodySite($0.zone, p) }),
            "note": .list(notes),
            "usedReference": .list(used),
        ], index: index)
        let children = zones.map { zone in
            FHIRResource("Procedure", id: "\(chart.fhirID)-\(zone.zone)", version: s.version, lastUpdated: when, patient: s.$patient.id, body: [
                "extension": [
                    ["url": .string(FHIRNames.needleDepth), "valueQuantity": ["value": .decimal(zone.depthMm), "unit": "mm",
                                                                             "system": "http://unitsofmeasure.org", "code": "mm"]],
                    ["url": .string(FHIRNames.passCount), "valuePositiveInt": .int(zone.passes)],
                ],
                "partOf": [ref("Procedure", chart)!],
                "status": "completed",
                "code": code,
                "subject": ref("Patient", s.$patient.id),
                "performedPeriod": ["start": .instant(s.anaestheticAppliedAt ?? s.createdAt), "end": .instant(when)],
                "performer": [["actor": ref("Practitioner", s.practitionerID)!]],
                "bodySite": [bodySite(zone.zone, p)],
                "note": [["text": .string("\(zone.depthMm) mm, \(zone.passes) passes, \(zone.pattern) pattern, \(zone.secondsInZone) s in zone")]],
                "usedReference": .list(used),
            ], index: index.merging(["part-of": [.reference("Procedure/\(chart.fhirID)")]]) { $1 })
        }
        return [parent] + children
    }

    /// Who signed a session version, when, and why an amendment was made.
    static func provenance(_ s: TreatmentSession) -> FHIRResource? {
        guard let signedAt = s.signedAt else { return nil }
        return FHIRResource("Provenance", id: "\(s.chartID.fhirID)-v\(s.version)", lastUpdated: signedAt, patient: s.$patient.id, body: [
            "target": [["reference": .string("Procedure/\(s.chartID.fhirID)/_history/\(s.version)")]],
            "recorded": .instant(signedAt),
            "reason": s.amendmentReason.map { [["text": .string($0)]] },
            "activity": concept("http://terminology.hl7.org/CodeSystem/v3-DataOperation", s.version == 1 ? "CREATE" : "UPDATE",
                                s.version == 1 ? "create" : "revise"),
            "agent": [[
                "type": concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
                "who": ref("Practitioner", s.signedBy)!,
            ]],
        ], index: ["target": [.reference("Procedure/\(s.chartID.fhirID)")], "recorded": [.date(.instant(signedAt))]])
    }

    // MARK: Follow-up

    static func observation(_ o: OutcomeScore, p: ClinicalProtocol) throws -> FHIRResource {
        let scale = p.outcomeScale(o.scale)
        let code: FHIRValue = if let c = scale?.coding {
            ["coding": [coding(c.system, c.code, c.display), coding(FHIRNames.outcomeScale, o.scale, scale?.name)], "text": (scale?.name).map(FHIRValue.string)]
        } else {
            concept(FHIRNames.outcomeScale, o.scale, scale?.name)
        }
        let performer: FHIRValue? = o.rater == "patient" ? ref("Patient", o.$patient.id) : ref("Practitioner", o.recordedBy)
        let label = scale?.levels.first { $0.value == o.value }?.label
        return FHIRResource("Observation", id: try o.requireID().fhirID, lastUpdated: o.recordedAt, patient: o.$patient.id, body: [
            "partOf": [ref("Procedure", o.chartID)!],
            "status": "final",
            "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")],
            "code": code,
            "subject": ref("Patient", o.$patient.id),
            "effectiveDateTime": .instant(o.recordedAt),
            "performer": performer.map { [$0] },
            "valueInteger": .int(o.value),
            "interpretation": label.map { [["text": .string($0)]] },
            "note": [["text": .string("Rated by the \(o.rater)")]],
        ], index: ["date": [.date(.instant(o.recordedAt))], "status": [.token(system: nil, code: "final")],
                   "code": [.token(system: FHIRNames.outcomeScale, code: o.scale)] + (scale?.coding.map { [.token(system: $0.system, code: $0.code)] } ?? []),
                   "part-of": [.reference("Procedure/\(o.chartID.fhirID)")]])
    }

    static func checkInObservation(_ c: CheckIn, p: ClinicalProtocol) throws -> FHIRResource {
        // The scales' ranges come from the protocol, as the check-in form reads them.
        let rednessScale = p.outcomeScale(p.followUp.rednessScale), painScale = p.outcomeScale(p.followUp.painScale)
        func named(_ label: String, _ scale: ClinicalProtocol.OutcomeScale?) -> String { scale.map { "\(label) (\($0.min)–\($0.max))" } ?? label }
        var components: [FHIRValue] = [
            ["code": concept(FHIRNames.checkIn, "redness", named("Redness", rednessScale)), "valueInteger": .int(c.redness)],
            ["code": painScale?.coding.map { ["coding": [coding($0.system, $0.code, $0.display)], "text": .string(named("Pain", painScale))] }
                ?? concept(FHIRNames.checkIn, "pain", named("Pain", painScale)),
             "valueInteger": .int(c.pain)],
            ["code": concept(FHIRNames.checkIn, "swelling", "Swelling"), "valueBoolean": .bool(c.swelling)],
            ["code": concept(FHIRNames.checkIn, "itching", "Itching"), "valueBoolean": .bool(c.itching)],
        ]
        if !c.infectionSigns.isEmpty {
            components.append(["code": concept(FHIRNames.checkIn, "infection-signs", "Signs of infection"), "valueString": .string(c.infectionSigns)])
        }
        return FHIRResource("Observation", id: try c.requireID().fhirID, lastUpdated: c.submittedAt, patient: c.$patient.id, body: [
            "partOf": [ref("Procedure", c.chartID)!],
            "status": "final",
            "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")],
            "code": concept(FHIRNames.checkIn, "aftercare-check-in", "Aftercare check-in, day \(c.day)"),
            "subject": ref("Patient", c.$patient.id),
            "effectiveDateTime": .instant(c.submittedAt),
            "performer": [ref("Patient", c.$patient.id)!],
            "note": c.notes.isEmpty ? nil : [["text": .string(c.notes)]],
            "component": .array(components),
        ], index: ["date": [.date(.instant(c.submittedAt))], "status": [.token(system: nil, code: "final")],
                   "code": [.token(system: FHIRNames.checkIn, code: "aftercare-check-in")],
                   "part-of": [.reference("Procedure/\(c.chartID.fhirID)")]])
    }

    static func adverseEvent(_ e: AdverseEvent, p: ClinicalProtocol) throws -> FHIRResource {
        let type = p.followUp.eventTypes.first { $0.id == e.type }
        let serious = e.severity == "severe"
        return FHIRResource("AdverseEvent", id: try e.requireID().fhirID, version: e.version, lastUpdated: e.updatedAt, patient: e.$patient.id, body: [
            "actuality": "actual",
            "category": [concept("http://terminology.hl7.org/CodeSystem/adverse-event-category", "product-use-error", "Product Use/Error",
                                 text: "Procedure complication")],
            "event": ["coding": [coding(FHIRNames.adverseEventType, e.type, type?.label)],
                      "text": .string([type?.label ?? e.type, e.details, e.actions.isEmpty ? "" : "Actions: \(e.actions)"].filter { !$0.isEmpty }.joined(separator: ". "))],
            "subject": ref("Patient", e.$patient.id),
            "date": .string(e.onset),
            "recordedDate": .instant(e.openedAt),
            "seriousness": concept("http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", serious ? "serious" : "non-serious",
                                   serious ? "Serious" : "Non-serious"),
            "severity": concept("http://terminology.hl7.org/CodeSystem/adverse-event-severity", e.severity, e.severity.capitalized),
            "outcome": concept("http://terminology.hl7.org/CodeSystem/adverse-event-outcome", e.outcome, e.outcome),
            "recorder": e.openedByKind == "patient" ? ref("Patient", e.$patient.id) : ref("Practitioner", e.openedBy),
            "suspectEntity": e.chartID.map { [["instance": ref("Procedure", $0)!]] },
        ], index: ["date": DateRange.parse(e.onset).map { [.date($0)] } ?? [], "severity": [.token(system: nil, code: e.severity)],
                   "event": [.token(system: FHIRNames.adverseEventType, code: e.type)]])
    }

    static func media(_ photo: Photo, base: String, p: ClinicalProtocol) throws -> FHIRResource {
        let id = try photo.requireID()
        let taken = CalendarDate(iso: photo.takenOn)
        return FHIRResource("Media", id: id.fhirID, lastUpdated: photo.uploadedAt, patient: photo.$patient.id, body: [
            "partOf": photo.chartID.map { [ref("Procedure", $0)!] },
            "status": "completed",
            "type": concept("http://terminology.hl7.org/CodeSystem/media-type", "image", "Image"),
            "view": ["text": .string(photo.view)],
            "subject": ref("Patient", photo.$patient.id),
            "createdDateTime": taken.map(date) ?? .instant(photo.uploadedAt),
            "issued": .instant(photo.uploadedAt),
            "operator": ref("Practitioner", photo.uploadedBy),
            "bodySite": bodySite(photo.zone, p),
            "height": .int(photo.height),
            "width": .int(photo.width),
            "content": [
                "contentType": .string(photo.contentType),
                "url": .string("\(base)/patients/\(photo.$patient.id.fhirID)/photos/\(id.fhirID)"),
                "size": .int(photo.byteCount),
                "title": .string("\(bodySiteText(photo.zone, p)), \(photo.view), \(photo.takenOn)"),
            ],
        ], index: ["created": taken.flatMap(DateRange.day).map { [.date($0)] } ?? [.date(.instant(photo.uploadedAt))],
                   "site": [.token(system: FHIRNames.zone, code: photo.zone)], "view": [.string(photo.view)]])
    }
}
