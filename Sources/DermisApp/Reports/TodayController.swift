import DermisCore
import Fluent
import Foundation
import Vapor

/// `/today`, the page staff land on: today's appointments per location with each patient's readiness (and who is
/// blocked, why, and the link that fixes it), then what needs someone: open adverse events, overdue check-ins, messages
/// that failed, cartridge lots expiring soon. Front desk sees readiness, never the clinical reasons behind it.
struct TodayController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("today", use: today).access(.staff(AccessRule.anyStaff, audits: "Patient"))
    }

    struct Check: Encodable {
        let text: String
        let ok: Bool
        let fix: String?
        let fixText: String?
    }

    struct Row: Encodable {
        let id: UUID
        let time: String
        let patientID: UUID?
        let patientName: String
        let service: String
        let practitioner: String
        let room: String
        let status: String
        let ready: Bool
        let checks: [Check]
        let numbing: String?
    }

    struct LocationDay: Encodable {
        let name: String
        let day: String
        let rows: [Row]
        let blocked: Int
    }

    struct Item: Encodable {
        let text: String
        let link: String
    }

    struct Page: Encodable {
        let page: PageHeader
        let locations: [LocationDay]
        let isClinical: Bool
        let isAdmin: Bool
        let openEvents: [Item]
        let questions: [Item]
        let overdueCheckIns: [Item]
        let failedMessages: Int
        let expiringLots: [Item]
        let expiryDays: Int
    }

    /// How many days ahead a lot's expiry is flagged: the stock report's figure.
    static let expiryDays = ClinicReports.expiryWarningDays

    func today(req: Request) async throws -> View {
        let principal = try req.staff()
        let clinicID = principal.clinicID
        let isClinical = AccessRule.clinical.contains(principal.role)
        let now = req.dermis.clock.now()
        let p = req.dermis.clinicalProtocol
        let clinic = try await req.clinic()
        let clinicZone = clinic?.zone ?? .current
        let today = CalendarDate(now, in: clinicZone)
        let scheduling = SchedulingService(req: req, clinicID: clinicID)
        let locations = try await scheduling.locations()
        let services = Dictionary(try await scheduling.services().map { ($0.id!, $0) }, uniquingKeysWith: { a, _ in a })
        let staff = Dictionary(try await StaffUser.query(on: req.db).filter(\.$clinic.$id == clinicID).all().map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
        var seen: [UUID] = []
        var days: [LocationDay] = []
        for location in locations {
            let day = CalendarDate(now, in: location.zone)
            let (start, end) = AftercareSchedule.bounds(of: day, in: location.zone)
            let appointments = try await Appointment.query(on: req.db).filter(\.$location.$id == location.requireID())
                .filter(\.$startsAt >= start).filter(\.$startsAt < end)
                .filter(\.$status ~~ [AppointmentStatus.pending, .booked, .checkedIn, .completed, .noShow].map(\.rawValue))
                .sort(\.$startsAt).all()
            let rooms = Dictionary(try await Room.query(on: req.db).filter(\.$location.$id == location.requireID()).all().map { ($0.id!, $0.name) },
                                   uniquingKeysWith: { a, _ in a })
            let patients = Dictionary(try await Patient.query(on: req.db).filter(\.$id ~~ appointments.compactMap { $0.$patient.id }).all().map { ($0.id!, $0) },
                                      uniquingKeysWith: { a, _ in a })
            var rows: [Row] = []
            for appointment in appointments {
                let service = services[appointment.$service.id]
                let isTreatment = service?.isTreatment ?? false
                var checks: [Check] = []
                var numbing: String?
                let patient = appointment.$patient.id.flatMap { patients[$0] }
                if let patient, let patientID = patient.id {
                    seen.append(patientID)
                    if isTreatment && [.pending, .booked, .checkedIn].contains(appointment.appointmentStatus) {
                        checks = try await Self.readiness(req, patient: patient, appointment: appointment, scheduling: scheduling, clinical: isClinical)
                        let timing = p.procedure
                        let numbFrom = appointment.startsAt.addingTimeInterval(Double(timing.checkInMinutes) * 60)
                        let needleFrom = numbFrom.addingTimeInterval(Double(p.anaesthetic.minimumMinutes) * 60)
                        numbing = "Numbing from \(CalendarController.clock(numbFrom, in: location.zone)), needling from \(CalendarController.clock(needleFrom, in: location.zone)) "
                            + "(\(p.anaesthetic.minimumMinutes) min — \(p.anaesthetic.source))"
                    }
                } else if isTreatment {
                    checks = [Check(text: "No patient record yet (an online booking): register the patient", ok: false,
                                    fix: "/appointments/\(appointment.id!)", fixText: "Open the booking")]
                }
                if appointment.appointmentStatus == .pending {
                    checks.append(Check(text: "Held online, not confirmed yet", ok: false, fix: "/appointments/\(appointment.id!)", fixText: "Confirm or cancel"))
                }
                rows.append(Row(id: appointment.id!, time: CalendarController.clock(appointment.startsAt, in: location.zone), patientID: patient?.id,
                                patientName: patient?.fullName ?? appointment.contactName, service: service?.name ?? "?",
                                practitioner: staff[appointment.practitionerID] ?? "?", room: rooms[appointment.roomID] ?? "?",
                                status: appointment.status, ready: checks.allSatisfy(\.ok), checks: checks, numbing: numbing))
            }
            days.append(LocationDay(name: location.name, day: day.description, rows: rows, blocked: rows.filter { !$0.ready }.count))
        }

        var openEvents: [Item] = [], overdue: [Item] = [], lots: [Item] = [], questions: [Item] = []
        var failed = 0
        if isClinical {
            let events = try await AdverseEvent.query(on: req.db).filter(\.$clinic.$id == clinicID).filter(\.$resolvedOn == nil).sort(\.$openedAt).all()
            let names = Dictionary(try await Patient.query(on: req.db).filter(\.$id ~~ events.map { $0.$patient.id }).all().map { ($0.id!, $0.fullName) },
                                   uniquingKeysWith: { a, _ in a })
            openEvents = events.map { event in
                seen.append(event.$patient.id)
                return Item(text: "\(names[event.$patient.id] ?? "?"): \(event.type), \(event.severity), since \(event.onset)"
                            + (event.firstActionAt == nil ? " — nobody has acted yet" : ""), link: "/adverse-events/\(event.id!)")
            }
            // Questions patients sent from their own pages, waiting for an answer.
            for (question, patient) in try await PortalQuestion.query(on: req.db).join(Patient.self, on: \PortalQuestion.$patient.$id == \Patient.$id)
                .filter(Patient.self, \.$clinic.$id == clinicID).filter(\.$answeredAt == nil).sort(\.$askedAt).all()
                .map({ ($0, try $0.joined(Patient.self)) }) {
                seen.append(try patient.requireID())
                questions.append(Item(text: "\(patient.fullName), \(LocalTime.words(question.askedAt, in: clinicZone)): \(question.text)",
                                      link: "/patients/\(try patient.requireID())/course#questions"))
            }
            for (patientID, name, chartID, day) in try await Self.overdueCheckIns(req, clinicID: clinicID, now: now, zone: clinicZone) {
                seen.append(patientID)
                overdue.append(Item(text: "\(name): no check-in since the day-\(day) invitation", link: "/patients/\(patientID)/sessions/\(chartID)/follow-up"))
            }
            lots = try await CartridgeLot.query(on: req.db).filter(\.$clinic.$id == clinicID).filter(\.$recalledAt == nil).sort(\.$expiry).all()
                .filter { lot in
                    guard let expiry = CalendarDate(iso: lot.expiry), lot.quantityRemaining > 0 else { return false }
                    return today.days(until: expiry) <= Self.expiryDays
                }
                .map { lot in
                    let days = CalendarDate(iso: lot.expiry).map { today.days(until: $0) } ?? 0
                    return Item(text: "Lot \(lot.lotNumber): \(lot.quantityRemaining) left, " + (days < 0 ? "expired on \(lot.expiry)" : "expires \(lot.expiry) (in \(days) days)"),
                                link: "/admin/inventory/lots/\(lot.id!)")
                }
        }
        if principal.role == .admin {
            failed = try await OutboxMessage.query(on: req.db).filter(\.$clinic.$id == clinicID).filter(\.$status == OutboxStatus.dead.rawValue).count()
        }
        // One row per patient shown; a day with none still records that the board (and any online contact) was read.
        if seen.isEmpty { try await req.audit(.read, objectType: "Today", outcome: .success) }
        else { try await req.auditMany(.read, objectType: "Today", objectID: nil, patientIDs: Array(Set(seen))) }
        return try await req.view.render("today", Page(
            page: try await PageHeader(req, title: "Today"), locations: days, isClinical: isClinical, isAdmin: principal.role == .admin,
            openEvents: openEvents, questions: questions, overdueCheckIns: overdue, failedMessages: failed, expiringLots: lots, expiryDays: Self.expiryDays))
    }

    /// What a treatment needs before it starts, each with the page that fixes it. Front desk gets the same checks
    /// without the clinical detail (which rule, which zone).
    static func readiness(_ req: Request, patient: Patient, appointment: Appointment, scheduling: SchedulingService, clinical: Bool) async throws -> [Check] {
        let id = try patient.requireID()
        let state = try await TreatmentService(req: req, patient: patient, staff: try req.staff()).readiness()
        let clearance = state.clearance
        var checks: [Check] = []
        if state.screening == nil {
            checks.append(Check(text: "No screening yet", ok: false, fix: "/patients/\(id)/intake/new", fixText: "Take the intake"))
        } else if !clearance.current {
            checks.append(Check(text: "Screening expired\(clinical ? " on \(clearance.expiresOn?.description ?? "?")" : "")", ok: false,
                                fix: "/patients/\(id)/intake/new", fixText: "Take a new intake"))
        } else if !clearance.cleared {
            checks.append(Check(text: clinical ? "Screening does not clear treatment: \(clearance.blocking.joined(separator: ", "))" : "Screening needs the practitioner",
                                ok: false, fix: clinical ? "/patients/\(id)/course" : nil, fixText: clinical ? "Review the screening" : nil))
        } else {
            checks.append(Check(text: "Screened and current", ok: true, fix: nil, fixText: nil))
        }
        if let plan = state.plan {
            if state.consent == nil {
                checks.append(Check(text: "No consent to plan version \(plan.version)", ok: false,
                                    fix: clinical ? "/patients/\(id)/plans/\(plan.id!)/consent" : "/patients/\(id)/course", fixText: "Sign the consent"))
            } else {
                checks.append(Check(text: "Consented to the current plan (version \(plan.version))", ok: true, fix: nil, fixText: nil))
            }
            if !state.unscreened.isEmpty {
                checks.append(Check(text: clinical ? state.unscreened.map(\.problem).joined(separator: "; ") : "A planned area was not screened", ok: false,
                                    fix: "/patients/\(id)/intake/new", fixText: "Take an intake with every area"))
            }
        } else {
            checks.append(Check(text: "No treatment plan", ok: false, fix: clinical ? "/patients/\(id)/plans/new" : "/patients/\(id)/course",
                                fixText: clinical ? "Plan the treatment" : "Open the course"))
        }
        // A session already charted today is this appointment's own: the interval was checked when it started.
        let zone = try await req.clinic()?.zone ?? .current
        let day = CalendarDate(appointment.startsAt, in: zone)
        let startOfDay = AftercareSchedule.bounds(of: day, in: zone).0
        if try await TreatmentSession.query(on: req.db).filter(\.$patient.$id == id).filter(\.$createdAt >= startOfDay).first() != nil {
            checks.append(Check(text: "Session under way or charted today", ok: true, fix: nil, fixText: nil))
        } else if let rule = try await scheduling.seriesRule(patientID: id, zones: appointment.zoneList, ignoring: appointment.id),
                  let earliest = rule.earliest {
            if day < earliest {
                checks.append(Check(text: "Too soon: \(clinical ? rule.reason : "the series interval") allows \(earliest) at the earliest", ok: false,
                                    fix: "/appointments/\(appointment.id!)", fixText: "Move the booking"))
            } else {
                checks.append(Check(text: "Interval respected (earliest \(earliest))", ok: true, fix: nil, fixText: nil))
            }
        }
        return checks
    }

    /// Patients whose latest asked-for check-in is overdue: the session's aftercare link is live, the day's invitation
    /// went out more than the protocol's overdue days ago, and nothing has come in since it was asked for.
    static func overdueCheckIns(_ req: Request, clinicID: UUID, now: Date, zone: TimeZone) async throws -> [(UUID, String, UUID, Int)] {
        let p = req.dermis.clinicalProtocol
        guard let invitations = p.followUp.invitations else { return [] }
        let links = try await PatientLink.query(on: req.db).join(Patient.self, on: \PatientLink.$patient.$id == \Patient.$id)
            .filter(Patient.self, \.$clinic.$id == clinicID).filter(\.$revokedAt == nil).filter(\.$expiresAt > now).all()
        guard !links.isEmpty else { return [] }
        let today = CalendarDate(now, in: zone)
        let names = Dictionary(try await Patient.query(on: req.db).filter(\.$id ~~ links.map { $0.$patient.id }).all().map { ($0.id!, $0.fullName) },
                               uniquingKeysWith: { a, _ in a })
        // Each session's latest invitation now overdue, and when it was asked for.
        var asked: [(link: PatientLink, day: Int, at: Date)] = []
        var charted = Set<UUID>()
        for link in links.sorted(by: { $0.createdAt > $1.createdAt }) where charted.insert(link.chartID).inserted {
            let sessionDay = CalendarDate(link.expiresAt.addingTimeInterval(-Double(p.followUp.linkValidDays) * 86_400), in: zone)
            guard let day = invitations.checkInDays.filter({ sessionDay.adding(days: $0 + invitations.overdueAfterDays) <= today }).max() else { continue }
            asked.append((link, day, AftercareSchedule.bounds(of: sessionDay.adding(days: day), in: zone).0))
        }
        guard let earliest = asked.map(\.at).min() else { return [] }
        // One query for every check-in since the earliest of them, not one per session.
        var latest: [UUID: Date] = [:]
        for checkIn in try await CheckIn.query(on: req.db).filter(\.$chartID ~~ asked.map(\.link.chartID)).filter(\.$submittedAt >= earliest).all() {
            latest[checkIn.chartID] = max(latest[checkIn.chartID] ?? .distantPast, checkIn.submittedAt)
        }
        return asked.filter { (latest[$0.link.chartID] ?? .distantPast) < $0.at }
            .map { ($0.link.$patient.id, names[$0.link.$patient.id] ?? "?", $0.link.chartID, $0.day) }
    }
}
