import DermisCore
import Fluent
import Foundation
import Vapor

/// Three months of fictional history for the demo clinic, the same for the same seed and day: about thirty patients
/// with series finished, in progress and stopped; an intake and screening before every session; plans from the
/// engine; consent; signed charts with depths across the protocol's bands and the pen and lot; aftercare; check-ins
/// (one that raised an adverse event, since resolved, and one just raised); outcome scores; synthetic photos (generated
/// patterns, never faces); bookings ahead and today, one online booking pending. Every record is built with the
/// engine and the same rules the pages apply (chart checks, screening, aftercare), then written in one transaction.
enum DemoHistory {
    static let defaultSeed: UInt64 = 20_261_130

    struct Setup {
        let clinic: Clinic
        let physician: StaffUser
        let nurse: StaffUser
        let admin: UUID
        let location: Location
        let rooms: [Room]
        let pen: Device
        let template: ConsentTemplate
        let consultation: Service
        let treatment: Service
        let review: Service
    }

    /// The courses patients come for: zones and the indication each is treated for.
    static let courses: [[(zone: String, indication: String)]] = [
        [("cheeks", "acne-scars")],
        [("forehead", "fine-lines"), ("periorbital", "fine-lines")],
        [("cheeks", "texture"), ("nose", "enlarged-pores")],
        [("forehead", "wrinkles")],
        [("cheeks", "acne-scars"), ("chin", "acne-scars")],
        [("neck", "fine-lines")],
    ]

    static let names: [(String, String)] = [
        ("Aiko", "Tanaka"), ("Bruno", "Costa"), ("Chloé", "Martin"), ("Dmitri", "Volkov"), ("Esra", "Yılmaz"), ("Femi", "Adeyemi"),
        ("Greta", "Lindqvist"), ("Hiroshi", "Sato"), ("Imogen", "Clarke"), ("Javier", "Morales"), ("Kasia", "Nowak"), ("Liam", "O'Brien"),
        ("Maya", "Patel"), ("Nadia", "Haddad"), ("Oskar", "Berg"), ("Priya", "Raman"), ("Quentin", "Leroy"), ("Rosa", "Ferreira"),
        ("Siobhan", "Kelly"), ("Tomás", "Ruiz"), ("Uma", "Krishnan"), ("Viktor", "Novák"), ("Wen", "Li"), ("Ximena", "Torres"),
        ("Yusuf", "Demir"), ("Zara", "Ahmed"), ("Ana", "Silva"), ("Ben", "Cohen"), ("Clara", "Weiss"), ("Dev", "Mehta"),
    ]

    /// Times handed out per day, one after another from 09:30: nothing overlaps (one pen, the no-overlap guard).
    struct Diary {
        var next: [CalendarDate: Int] = [:]
        let zone: TimeZone

        mutating func slot(on day: CalendarDate, minutes: Int, buffer: Int) -> (start: Date, end: Date, holds: Date) {
            // A day that fills up goes on into the evening, never past 22:00.
            let from = min(next[day] ?? 9 * 60 + 30, 22 * 60)
            let start = Availability.instant(day, ClockTime(minutes: from)!, in: zone)
            let end = start.addingTimeInterval(Double(minutes) * 60)
            next[day] = ((from + minutes + buffer + 14) / 15) * 15
            return (start, end, end.addingTimeInterval(Double(buffer) * 60))
        }
    }

    static func seed(_ s: Setup, app: Application, db: any Database, seed: UInt64 = defaultSeed) async throws {
        var rng = SplitMix64(seed: seed)
        let p = app.dermis.clinicalProtocol
        let now = app.dermis.clock.now()
        let zone = s.clinic.zone
        let today = CalendarDate(now, in: zone)
        let clinicID = try s.clinic.requireID()
        var diary = Diary(zone: zone)
        let photos = PhotoStore(dataDirectory: app.dermis.settings.dataDirectory)
        guard let device = p.devices.first(where: { $0.id == s.pen.profile }) else { return }
        // The history's own cartridges: a lot received before it began, so the lots for today keep their stock.
        let lot = CartridgeLot()
        lot.$clinic.id = clinicID
        lot.lotNumber = "DEMO-LOT-0"
        lot.expiry = today.adding(months: 9).description
        lot.needleCount = device.needles
        lot.quantityReceived = 120
        lot.quantityRemaining = 120
        lot.receivedAt = Availability.instant(today.adding(days: -100), ClockTime(minutes: 9 * 60)!, in: zone)
        try await lot.create(on: db)
        /// The physician works Monday to Friday, the nurse Tuesday to Saturday (the demo's schedule).
        func works(_ who: StaffUser, _ day: CalendarDate) -> Bool { who.id == s.physician.id ? day.isoWeekday <= 5 : (2...6).contains(day.isoWeekday) }
        func weekday(_ day: CalendarDate, _ who: StaffUser) -> CalendarDate {
            var day = day
            while !works(who, day) { day = day.adding(days: 1) }
            return day
        }
        func at(_ day: CalendarDate, _ minutes: Int) -> Date { Availability.instant(day, ClockTime(minutes: minutes)!, in: zone) }
        func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try ContractJSON.encode(value), as: UTF8.self) }

        var next: [Next] = []
        var flagged = 0
        for (index, name) in names.enumerated() {
            let course = courses[index % courses.count]
            let fitzpatrick = Int.random(in: 1...6, using: &rng)
            let birth = CalendarDate(year: Int.random(in: 1965...2001, using: &rng), month: Int.random(in: 1...12, using: &rng), day: Int.random(in: 1...28, using: &rng))!
            let details = try PatientDetails(givenName: name.0, familyName: name.1, dateOfBirth: birth.description,
                                             phone: String(format: "+44 7700 9%05d", 200 + index), fitzpatrickType: fitzpatrick).validated(today: today)
            let patient = try await PatientRegistry(db: db, clinicID: clinicID).create(details, by: s.admin, at: now)
            let patientID = try patient.requireID()

            // The plan the engine makes for the course, within the practitioner's licence.
            let deep = course.contains { $0.indication == "acne-scars" || $0.indication == "wrinkles" }
            let practitioner = deep || Bool.random(using: &rng) ? s.physician : s.nurse
            let skin = Bool.random(using: &rng) ? "thick" : "thin"
            var firstDay = weekday(today.adding(days: -Int.random(in: 3...90, using: &rng)), practitioner)
            // The first patient is due today after two sessions: the today board's ready patient, charts and photos to show.
            guard let interval = p.indications.first(where: { $0.id == course[0].indication })?.series.minIntervalDays else { continue }
            if index == 0 {
                firstDay = today.adding(days: -2 * interval - 4)
                while !works(practitioner, firstDay) { firstDay = firstDay.adding(days: -1) }
            }
            let consultDay = weekday(firstDay.adding(days: -7), practitioner)
            let request = try decodeInput(PlanRequest.self, from: Data(try json(PlanRequestBody(
                zones: course.map { .init(zone: $0.zone, indication: $0.indication) }, skin: skin, fitzpatrickType: fitzpatrick,
                device: device.id, practitionerMaxDepthMm: practitioner.maxDepthMm, startDate: firstDay.description)).utf8))
            let plan = try Planning.plan(request, today: consultDay, protocol: p)

            let consult = diary.slot(on: consultDay, minutes: 30, buffer: 0)
            try await appointment(s, patient: patient, service: s.consultation, practitioner: practitioner, room: s.rooms[1], pen: nil,
                                  zones: [], slot: consult, status: .completed, at: consult.start, on: db)
            func intake(on day: CalendarDate, version: Int) async throws -> ScreeningRecord {
                let zones = course.map { "\"\($0.zone)\"" }.joined(separator: ",")
                let answers = try decodeInput(Intake.self, from: Data("""
                    {"dateOfBirth":"\(birth)","fitzpatrickType":\(fitzpatrick),"pregnant":false,"nursing":false,"treatmentZones":[\(zones)],
                     "conditions":[],"medications":[],"allergies":[],"recentProcedures":[]}
                    """.utf8))
                let result = try Screening.screen(answers, on: day, protocol: p)
                let record = IntakeRecord()
                record.$patient.id = patientID
                record.version = version
                record.answers = try json(answers)
                record.createdAt = at(day, 9 * 60)
                record.createdBy = practitioner.id!
                try await record.create(on: db)
                let screening = ScreeningRecord()
                screening.$patient.id = patientID
                screening.$intake.id = try record.requireID()
                screening.outcome = result.outcome.rawValue
                screening.until = result.until?.description
                screening.result = try json(result)
                screening.protocolVersion = result.protocolVersion
                screening.screenedOn = day.description
                screening.createdAt = record.createdAt
                screening.createdBy = practitioner.id!
                try await screening.create(on: db)
                return screening
            }
            var screening = try await intake(on: consultDay, version: 1)
            let planRecord = TreatmentPlanRecord()
            planRecord.$patient.id = patientID
            planRecord.version = 1
            planRecord.request = try json(request)
            planRecord.result = try json(plan)
            planRecord.adjustments = "[]"
            planRecord.protocolVersion = p.version
            planRecord.createdAt = consult.end
            planRecord.createdBy = practitioner.id!
            try await planRecord.create(on: db)
            let consent = ConsentRecord()
            consent.$patient.id = patientID
            consent.$plan.id = try planRecord.requireID()
            consent.$template.id = try s.template.requireID()
            consent.typedName = patient.fullName
            consent.signaturePNG = signature
            consent.signatureSHA256 = Secrets.digest(signature)
            consent.signedAt = consult.end
            consent.recordedBy = practitioner.id!
            try await consent.create(on: db)

            // The sessions so far, the interval apart (and a few days' slack); some patients stop after one or two.
            let minutes = plan.appointmentMinutes
            let stopsAfter = Int.random(in: 0..<10, using: &rng) == 0 ? Int.random(in: 1...2, using: &rng) : nil
            let baseline = course.map { c in p.outcomeScales.filter { $0.indications?.contains(c.indication) == true } }.flatMap { $0 }
            var scales: [(ClinicalProtocol.OutcomeScale, Int)] = []
            for scale in baseline where !scales.contains(where: { $0.0.id == scale.id }) {
                scales.append((scale, Int.random(in: max(scale.min + 1, scale.max - 1)...scale.max, using: &rng)))
            }
            let pace = Double.random(in: 0.3...0.7, using: &rng)
            var day = firstDay
            var done = 0
            while done < plan.series.sessions && day < today && (stopsAfter.map { done < $0 } ?? true) && (index != 0 || done < 2) {
                if done > 0 { screening = try await intake(on: day, version: done + 1) }
                let slot = diary.slot(on: day, minutes: minutes, buffer: s.treatment.bufferMinutes)
                try await appointment(s, patient: patient, service: s.treatment, practitioner: practitioner, room: s.rooms[0], pen: s.pen,
                                      zones: course.map(\.zone), slot: slot, status: .completed, at: slot.start, on: db)
                // The depth the practitioner charts: the plan's, now and then a quarter millimetre shallower.
                let zones = try ChartRules.checked(plan.zones.map { planned in
                    let depth = Bool.random(using: &rng) ? planned.depthMm : max(planned.depthRangeMm.min, planned.depthMm - 0.25)
                    return ChartedZone(zone: planned.zone, depthMm: depth, passes: planned.passes, pattern: planned.pattern, secondsInZone: planned.secondsInZone)
                }, plan: plan, device: device, practitionerMaxDepthMm: practitioner.maxDepthMm, protocol: p)
                let session = TreatmentSession()
                session.chartID = UUID()
                session.version = 1
                session.$patient.id = patientID
                session.$plan.id = try planRecord.requireID()
                session.$consent.id = try consent.requireID()
                session.$screening.id = try screening.requireID()
                session.practitionerID = practitioner.id!
                session.$device.id = try s.pen.requireID()
                session.$lot.id = try lot.requireID()
                session.status = "signed"
                session.identityConfirmed = true
                session.skinCleansed = true
                session.anaestheticAppliedAt = slot.start.addingTimeInterval(Double(p.procedure.checkInMinutes) * 60)
                session.painScore = Int.random(in: 2...5, using: &rng)
                session.erythemaGrade = Int.random(in: 1...2, using: &rng)
                session.pinpointBleeding = zones.contains { $0.depthMm > 1.0 }
                session.notes = "Tolerated well. (Fictional demo record.)"
                session.zones = zones
                session.createdAt = slot.start
                session.updatedAt = slot.end
                session.signedAt = slot.end
                session.signedBy = practitioner.id!
                try await session.create(on: db)
                try await ReportFacts.record(session, on: db)
                lot.quantityRemaining = max(0, lot.quantityRemaining - 1)
                let schedule = AftercareSchedule.issue(sessionEnd: slot.end, deepestDepthMm: zones.map(\.depthMm).max() ?? 0, protocol: p)
                let aftercare = AftercarePlan()
                aftercare.chartID = session.chartID
                aftercare.version = 1
                aftercare.$patient.id = patientID
                aftercare.scheduleJSON = String(decoding: try JSONEncoder().encode(schedule), as: UTF8.self)
                aftercare.issuedAt = slot.end
                aftercare.issuedBy = practitioner.id!
                try await aftercare.create(on: db)

                // Scores: the indication's scales improving at this patient's pace; GAIS from the second session on.
                for (scale, start) in scales {
                    let value = max(scale.min, start - Int((Double(done) * pace).rounded(.down)))
                    try await score(scale.id, "practitioner", value, chart: session.chartID, patient: patientID, by: practitioner.id!, at: slot.end, on: db)
                }
                if done > 0, let gais = p.outcomeScale("gais") {
                    let value = max(gais.min, min(gais.max, 4 - Int((Double(done) * pace).rounded())))
                    try await score(gais.id, "practitioner", value, chart: session.chartID, patient: patientID, by: practitioner.id!, at: slot.end, on: db)
                    try await score(gais.id, "patient", max(gais.min, value - Int.random(in: 0...1, using: &rng)), chart: session.chartID, patient: patientID,
                                    by: nil, at: slot.end, on: db)
                }
                // A synthetic photo of the first zone, before each session.
                try await photo(patient: patientID, chart: session.chartID, zone: course[0].zone, day: day, fitzpatrick: fitzpatrick,
                                marks: max(2, 26 - done * Int(10 * pace)), seed: rng.next(), by: practitioner.id!, at: slot.start, store: photos, on: db)

                // The aftercare link and check-ins of the sessions still inside the follow-up window.
                let linkEnds = slot.end.addingTimeInterval(Double(p.followUp.linkValidDays) * 86_400)
                if linkEnds > now {
                    let link = PatientLink()
                    link.tokenHash = Secrets.digest(Secrets.token())
                    link.chartID = session.chartID
                    link.$patient.id = patientID
                    link.createdAt = slot.end
                    link.createdBy = practitioner.id!
                    link.expiresAt = linkEnds
                    try await link.create(on: db)
                    var earlier: [(pain: Int, at: Date)] = []
                    // Two series get a day-9 check-in with redness beyond the downtime, which raises an adverse event: an
                    // older one, since resolved, and a recent one nobody has acted on yet.
                    let age = day.days(until: today)
                    let raises = (flagged == 0 && (20...27).contains(age)) || (flagged == 1 && (10...19).contains(age))
                    for checkDay in (p.followUp.invitations?.checkInDays ?? []) + (raises ? [9] : []) {
                        let when = at(day.adding(days: checkDay), 19 * 60)
                        guard when < now else { continue }
                        // One in four stops checking in after day 1 (an overdue check-in on the today board).
                        if checkDay >= 3 && index % 4 == 1 { continue }
                        let redness = checkDay >= 9 ? 2 : max(0, 2 - checkDay / 2)
                        let report = CheckInReport(redness: redness, pain: max(0, 3 - checkDay), notes: "")
                        let flags = CheckInRules.flags(for: report, at: when, schedule: schedule, previous: earlier, zone: zone, protocol: p)
                        earlier.append((report.pain, when))
                        let checkIn = CheckIn()
                        checkIn.$link.id = try link.requireID()
                        checkIn.chartID = session.chartID
                        checkIn.$patient.id = patientID
                        checkIn.submittedAt = when
                        checkIn.day = schedule.day(of: when, in: zone)
                        checkIn.redness = report.redness
                        checkIn.pain = report.pain
                        checkIn.swelling = false
                        checkIn.itching = checkDay == 1
                        checkIn.infectionSigns = ""
                        checkIn.notes = ""
                        checkIn.flagsJSON = String(decoding: try JSONEncoder().encode(flags), as: UTF8.self)
                        try await checkIn.create(on: db)
                        for flag in flags {
                            flagged += 1
                            let resolved = flagged == 1
                            let event = AdverseEvent()
                            event.$clinic.id = clinicID
                            event.$patient.id = patientID
                            event.chartID = session.chartID
                            event.$checkIn.id = try checkIn.requireID()
                            event.type = flag.eventType
                            event.severity = flag.severity
                            event.onset = CalendarDate(when, in: zone).description
                            event.details = "\(flag.message) Rule: \(flag.rule) — \(flag.source)"
                            event.actions = resolved ? "Phoned the patient; cool compresses, bland emollient, sunscreen; reviewed at day 10." : ""
                            event.outcome = resolved ? "recovered" : "ongoing"
                            event.resolvedOn = resolved ? day.adding(days: 12).description : nil
                            event.openedByKind = "check-in-rule"
                            event.openedAt = when
                            event.version = resolved ? 2 : 1
                            event.updatedAt = resolved ? at(day.adding(days: 12), 12 * 60) : when
                            event.updatedBy = resolved ? practitioner.id : nil
                            event.firstActionAt = resolved ? when.addingTimeInterval(14 * 3600) : nil
                            try await event.create(on: db)
                        }
                    }
                }
                done += 1
                let slack = Int.random(in: 0...4, using: &rng)
                day = weekday(day.adding(days: plan.series.minIntervalDays + (index == 0 ? 0 : slack)), practitioner)
            }
            try await ReportFacts.refreshSeries(of: patientID, on: db)
            // Attendance is not perfect: a missed review, a cancellation hours before, one cancelled days ahead.
            if index % 8 >= 5, firstDay.adding(days: 3) < today {
                let reviewDay = weekday(firstDay.adding(days: 3), practitioner)
                let slot = diary.slot(on: reviewDay, minutes: s.review.minutes ?? 20, buffer: 0)
                let notice: TimeInterval = index % 8 == 5 ? 0 : (index % 8 == 6 ? 5 * 3600 : 3 * 86_400)
                try await appointment(s, patient: patient, service: s.review, practitioner: practitioner, room: s.rooms[2], pen: nil, zones: [],
                                      slot: slot, status: notice == 0 ? .noShow : .cancelled, at: slot.start.addingTimeInterval(-notice - 7 * 86_400), on: db,
                                      updated: notice == 0 ? nil : slot.start.addingTimeInterval(-notice))
            }
            // The next session of a series in progress, booked below once every patient's is known.
            guard done < plan.series.sessions, stopsAfter.map({ done < $0 }) ?? true, done > 0 else { continue }
            let version = done + 1
            next.append(Next(patient: patient, practitioner: practitioner, zones: course.map(\.zone), minutes: minutes, due: day, done: done,
                             freshIntake: { _ = try await intake(on: today, version: version) }))
        }

        // Today: a patient mid-series who filled a new intake this morning (ready), one due whose screening has lapsed,
        // and one booked before the interval allows; everyone else on the day their next session is due.
        var onToday: [Int] = []
        if let ready = next.indices.first(where: { next[$0].done >= 2 && next[$0].due <= today }) ?? next.indices.first(where: { next[$0].due <= today }) {
            onToday.append(ready)
        }
        if let lapsed = next.indices.first(where: { !onToday.contains($0) && next[$0].due <= today }) { onToday.append(lapsed) }
        if let early = next.indices.first(where: { !onToday.contains($0) && next[$0].due > today && next[$0].due <= today.adding(days: 7) }) { onToday.append(early) }
        for (i, booking) in next.enumerated() {
            let isToday = onToday.contains(i)
            if i == onToday.first { try await booking.freshIntake() }
            let slot = diary.slot(on: isToday ? today : weekday(max(booking.due, today.adding(days: 1)), booking.practitioner), minutes: booking.minutes,
                                  buffer: s.treatment.bufferMinutes)
            try await appointment(s, patient: booking.patient, service: s.treatment, practitioner: booking.practitioner, room: s.rooms[0], pen: s.pen,
                                  zones: booking.zones, slot: slot, status: .booked, at: now, on: db)
        }

        // A review today, a new patient's consultation, a failed message and an online booking waiting to be confirmed.
        let newcomer = try await PatientRegistry(db: db, clinicID: clinicID).create(
            try PatientDetails(givenName: "Noor", familyName: "Rahimi", dateOfBirth: "1995-07-19", phone: "+44 7700 900299", fitzpatrickType: 4).validated(today: today),
            by: s.admin, at: now)
        let consult = diary.slot(on: today, minutes: 30, buffer: 0)
        try await appointment(s, patient: newcomer, service: s.consultation, practitioner: s.physician, room: s.rooms[1], pen: nil, zones: [],
                              slot: consult, status: .booked, at: now, on: db)
        let pendingDay = weekday(today.adding(days: 3), s.nurse)
        let pending = diary.slot(on: pendingDay, minutes: 30, buffer: 0)
        let held = Appointment()
        held.id = UUID()
        held.$clinic.id = clinicID
        held.$location.id = try s.location.requireID()
        held.contactName = "Lena Fischer"
        held.contactEmail = "lena.fischer@example.com"
        held.contactPhone = "+44 7700 900298"
        held.$service.id = try s.consultation.requireID()
        held.zones = ""
        held.practitionerID = s.nurse.id!
        held.roomID = s.rooms[1].id!
        held.startsAt = pending.start
        held.endsAt = pending.end
        held.holdsUntil = pending.holds
        held.status = AppointmentStatus.pending.rawValue
        held.source = "public"
        // A real hold lapses in half an hour unless the patient confirms; the demo's waits a day to be seen.
        held.holdExpiresAt = now.addingTimeInterval(86_400)
        held.notes = "Booked online (fictional)."
        held.version = 1
        held.createdAt = now
        held.updatedAt = now
        try await held.create(on: db)
        let failed = OutboxMessage(clinicID: clinicID, recipient: "+447700900210", subject: "Your aftercare", body: "(fictional demo message)",
                                   kind: "reminder", at: now.addingTimeInterval(-86_400))
        failed.channel = MessagePreference.Channel.sms.rawValue
        failed.status = OutboxStatus.dead.rawValue
        failed.attempts = 5
        failed.lastError = "The SMS gateway refused the number (fictional)."
        try await failed.create(on: db)
        try await lot.save(on: db)
    }

    /// A series in progress whose next session is still to book.
    private struct Next {
        let patient: Patient
        let practitioner: StaffUser
        let zones: [String]
        let minutes: Int
        let due: CalendarDate
        let done: Int
        let freshIntake: () async throws -> Void
    }

    private struct PlanRequestBody: Encodable {
        struct Zone: Encodable {
            let zone: String
            let indication: String
        }

        let zones: [Zone]
        let skin: String
        let fitzpatrickType: Int
        let device: String
        let practitionerMaxDepthMm: Double?
        let startDate: String
    }

    private static func appointment(_ s: Setup, patient: Patient, service: Service, practitioner: StaffUser, room: Room, pen: Device?, zones: [String],
                                    slot: (start: Date, end: Date, holds: Date), status: AppointmentStatus, at created: Date, on db: any Database,
                                    updated: Date? = nil) async throws {
        let a = Appointment()
        a.id = UUID()
        a.$clinic.id = try s.clinic.requireID()
        a.$location.id = try s.location.requireID()
        a.$patient.id = try patient.requireID()
        a.contactName = patient.fullName
        a.contactEmail = ""
        a.contactPhone = patient.phoneE164 ?? ""
        a.$service.id = try service.requireID()
        a.zones = zones.joined(separator: ",")
        a.practitionerID = try practitioner.requireID()
        a.roomID = try room.requireID()
        a.penID = pen?.id
        a.startsAt = slot.start
        a.endsAt = slot.end
        a.holdsUntil = slot.holds
        a.status = status.rawValue
        a.source = "staff"
        a.notes = ""
        a.version = 1
        a.createdAt = min(created, slot.start)
        a.createdBy = practitioner.id
        a.updatedAt = updated ?? min(created, slot.start)
        try await a.create(on: db)
    }

    private static func score(_ scale: String, _ rater: String, _ value: Int, chart: UUID, patient: UUID, by: UUID?, at: Date, on db: any Database) async throws {
        let score = OutcomeScore()
        score.$patient.id = patient
        score.chartID = chart
        score.scale = scale
        score.rater = rater
        score.value = value
        score.recordedAt = at
        score.recordedBy = by
        try await score.create(on: db)
    }

    /// A generated picture — a skin-toned field with a number of darker marks that falls as the series goes on — as a
    /// JPEG through the same encoder uploads are re-encoded with. Never a face, never a real image.
    private static func photo(patient: UUID, chart: UUID, zone: String, day: CalendarDate, fitzpatrick: Int, marks: Int, seed: UInt64,
                              by: UUID, at: Date, store: PhotoStore, on db: any Database) async throws {
        let width = 240, height = 300
        let tones: [(Double, Double, Double)] = [(246, 222, 206), (236, 200, 172), (214, 172, 140), (180, 132, 98), (130, 88, 60), (88, 58, 40)]
        let tone = tones[max(0, min(5, fitzpatrick - 1))]
        var rng = SplitMix64(seed: seed)
        let spots = (0..<marks).map { _ in (x: Double.random(in: 20...220, using: &rng), y: Double.random(in: 20...280, using: &rng), r: Double.random(in: 3...8, using: &rng)) }
        var darken = [Double](repeating: 1, count: width * height)
        for spot in spots {
            for y in max(0, Int(spot.y - spot.r))...min(height - 1, Int(spot.y + spot.r)) {
                for x in max(0, Int(spot.x - spot.r))...min(width - 1, Int(spot.x + spot.r)) {
                    let d = ((spot.x - Double(x)) * (spot.x - Double(x)) + (spot.y - Double(y)) * (spot.y - Double(y))).squareRoot()
                    if d < spot.r { darken[y * width + x] = min(darken[y * width + x], 0.78 + 0.2 * d / spot.r) }
                }
            }
        }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let level = (1.0 - 0.12 * Double(y) / Double(height) + 0.04 * sin(Double(x) / 17)) * darken[y * width + x]
                let i = (y * width + x) * 3
                rgb[i] = UInt8(max(0, min(255, tone.0 * level)))
                rgb[i + 1] = UInt8(max(0, min(255, tone.1 * level)))
                rgb[i + 2] = UInt8(max(0, min(255, tone.2 * level)))
            }
        }
        guard let jpeg = PhotoSanitizer.encodeJPEG(rgb: rgb, width: width, height: height, quality: 82) else { return }
        let name = try store.write(jpeg, fileExtension: "jpg")
        let photo = Photo()
        photo.$patient.id = patient
        photo.chartID = chart
        photo.zone = zone
        photo.view = "front"
        photo.takenOn = day.description
        photo.uploadedAt = at
        photo.uploadedBy = by
        photo.source = "staff"
        photo.contentType = "image/jpeg"
        photo.width = width
        photo.height = height
        photo.byteCount = jpeg.count
        photo.sha256 = Secrets.digest(jpeg)
        photo.storedName = name
        try await photo.create(on: db)
    }

    /// A drawn signature for the demo's consents: a small generated PNG (a line), the same for every record.
    static let signature: Data = {
        // 1×1 transparent PNG: consent records need a drawing; the demo's is a placeholder, marked as such by the clinic.
        Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")!
    }()
}
