import DermisCore
import Fluent
import Vapor

/// The fictional clinic a newcomer clicks through: its staff get random passwords, shown once on the terminal.
public enum DemoClinic {
    /// The demo patient who can sign in to the patient pages (Zoë Lefèvre).
    public static let patientEmail = "zoe@patient.demo.dermis.test"

    static let name = "Harbour Skin Clinic"

    public struct Login: Sendable {
        public let role: String
        public let email: String
        public let password: String
    }

    /// Creates the demo clinic, staff and patients when the database has no clinic yet; returns the staff sign-ins.
    static func seedIfEmpty(app: Application, history: Bool = true, seed: UInt64 = DemoHistory.defaultSeed) async throws -> [Login] {
        let db = app.db
        guard try await Clinic.query(on: db).count() == 0 else { return [] }
        let clinic = Clinic(name: name, timeZone: "Europe/London", isDemo: true)
        try await clinic.create(on: db)
        let clinicID = try clinic.requireID()
        let staff: [(String, String, StaffRole, String?, Double?)] = [
            ("admin@demo.dermis.test", "Alex Admin (demo)", .admin, nil, nil),
            ("ines.doctor@demo.dermis.test", "Dr Inês Moreau (demo)", .practitioner, "physician", 2.5),
            ("sam.nurse@demo.dermis.test", "Sam Okafor RN (demo)", .practitioner, "nurse", 1.5),
            ("desk@demo.dermis.test", "Jo Front Desk (demo)", .frontDesk, nil, nil),
        ]
        var logins: [Login] = []
        var creator: UUID?
        var practitioners: [UUID] = []
        var users: [StaffUser] = []
        for (email, personName, role, credential, depth) in staff {
            let password = app.dermis.settings.randomPassword()
            let user = try await StaffAccounts.create(
                .init(email: email, name: personName, password: password, role: role, credential: credential, maxDepthMm: depth),
                clinicID: clinicID, createdBy: creator, on: app, db: db)
            creator = creator ?? user.id
            users.append(user)
            if role == .practitioner, let id = user.id { practitioners.append(id) }
            logins.append(Login(role: role.displayName, email: email, password: password))
        }
        let template = try await ConsentTexts.publish(title: ConsentTexts.demoTitle, body: ConsentTexts.demoBody, clinicID: clinicID, by: creator!,
                                           at: app.dermis.clock.now(), on: db)
        let stock = Inventory(db: db, clinicID: clinicID)
        let today = CalendarDate(app.dermis.clock.now(), in: clinic.zone)
        let pen = try await stock.register(model: "SkinPen-type pen (demo)", serial: "DEMO-PEN-001", profile: "skinpen",
                                           protocol: app.dermis.clinicalProtocol, at: app.dermis.clock.now())
        _ = try await stock.receive(lotNumber: "DEMO-LOT-A", expiry: today.adding(months: 12).description, needleCount: "14", quantity: "50",
                                    today: today, at: app.dermis.clock.now())
        // A second lot, nearly used up and expiring within the month: what the today board and the stock report flag.
        _ = try await stock.receive(lotNumber: "DEMO-LOT-B", expiry: today.adding(days: 20).description, needleCount: "14", quantity: "6",
                                    today: today, at: app.dermis.clock.now())
        let (location, rooms, services) = try await seedSchedule(clinicID: clinicID, practitioners: practitioners, pen: pen, on: db)
        let registry = PatientRegistry(db: db, clinicID: clinicID)
        let now = app.dermis.clock.now()
        // Zoë has an e-mail address, so a newcomer can try the patient's own pages (/my/sign-in); the link waits in the outbox.
        for (given, family, birth, phone, email, type) in [
            ("Zoë", "Lefèvre", "1988-03-14", "+44 7700 900101", DemoClinic.patientEmail, 2), ("José", "Álvarez", "1979-11-02", "+44 7700 900102", nil, 4),
            ("Amara", "Nwosu", "1993-06-21", "+44 7700 900103", nil, 6), ("Hannah", "Schmidt", "1971-01-30", "+44 7700 900104", nil, 1),
        ] {
            let details = try PatientDetails(givenName: given, familyName: family, dateOfBirth: birth, phone: phone, email: email, fitzpatrickType: type)
                .validated(today: CalendarDate(now, in: clinic.zone))
            _ = try await registry.create(details, by: creator!, at: now)
        }
        if history {
            try await Writes.transaction(db) { db in
                try await DemoHistory.seed(.init(clinic: clinic, physician: users[1], nurse: users[2], admin: creator!, location: location, rooms: rooms,
                                                 pen: pen, template: template, consultation: services[0], treatment: services[1], review: services[2]),
                                           app: app, db: db, seed: seed)
            }
        }
        return logins
    }

    /// One location on London time with three rooms and the pen; the physician works Monday–Friday 09:00–17:30, the
    /// nurse Tuesday–Saturday 10:00–18:00, each with a half-hour lunch; consultations, treatments and reviews.
    static func seedSchedule(clinicID: UUID, practitioners: [UUID], pen: Device, on db: any Database) async throws -> (Location, [Room], [Service]) {
        let location = try await ScheduleSetup.createLocation(name: "Harbourside", timeZone: "Europe/London", address: "1 Quay Street (fictional)",
                                                              phone: "+44 20 7946 0000", clinicID: clinicID, on: db)
        var rooms: [Room] = []
        for name in ["Room 1", "Room 2", "Room 3"] { rooms.append(try await ScheduleSetup.createRoom(name: name, at: location, on: db)) }
        pen.$location.id = try location.requireID()
        try await pen.save(on: db)
        func week(_ days: ClosedRange<Int>, _ open: String, _ close: String, lunch: String, _ back: String) -> [ScheduleSetup.WeeklyRow] {
            days.flatMap { day in
                [ScheduleSetup.WeeklyRow(weekday: day, start: ClockTime(open)!, end: ClockTime(close)!, kind: "hours"),
                 ScheduleSetup.WeeklyRow(weekday: day, start: ClockTime(lunch)!, end: ClockTime(back)!, kind: "break")]
            }
        }
        let hours = [week(1...5, "09:00", "17:30", lunch: "12:30", "13:00"), week(2...6, "10:00", "18:00", lunch: "13:00", "13:30")]
        for (staffID, rows) in zip(practitioners, hours) {
            try await ScheduleSetup.replaceHours(rows, staffID: staffID, locationID: try location.requireID(), on: db)
        }
        let consultation = try await ScheduleSetup.createService(code: "consultation", name: "Consultation", kind: "consultation", minutes: 30, bufferMinutes: 0,
                                                  needsPen: false, isPublic: true, practitioners: practitioners, clinicID: clinicID, on: db)
        let treatment = try await ScheduleSetup.createService(code: "treatment", name: "Microneedling treatment", kind: "treatment", minutes: nil, bufferMinutes: 15,
                                                  needsPen: true, isPublic: true, practitioners: practitioners, clinicID: clinicID, on: db)
        let review = try await ScheduleSetup.createService(code: "review", name: "Follow-up review", kind: "review", minutes: 20, bufferMinutes: 0,
                                                  needsPen: false, isPublic: false, practitioners: practitioners, clinicID: clinicID, on: db)
        // The demo bills in pounds, prices including 20 % VAT, and asks online bookings for a £50 deposit refunded with
        // 48 hours' notice (taken only where a payment provider is configured). Fictional prices, for the demo.
        for (service, price) in [(consultation, Int64(5000)), (treatment, 25000), (review, 0)] {
            service.priceMinor = price
            try await service.save(on: db)
        }
        let billing = try await InvoiceStore(db: db, clinicID: clinicID).configure(currency: "GBP", pricesIncludeTax: true, at: Date())
        billing.defaultTaxBasisPoints = 2000
        billing.depositAmount = 5000
        billing.noticeHours = 48
        try await billing.save(on: db)
        return (location, rooms, [consultation, treatment, review])
    }

    /// The sign-ins as printed once on the terminal.
    static func announcement(_ logins: [Login]) -> String {
        guard !logins.isEmpty else { return "" }
        var lines = ["", "Demo clinic created: \(name) (fictional). Sign-ins, shown only now:"]
        for login in logins { lines.append("  \(login.role.padding(toLength: 13, withPad: " ", startingAt: 0)) \(login.email)  \(login.password)") }
        lines.append("The admin sets up an authenticator app at first sign-in. Other roles may add one under Your account.")
        return lines.joined(separator: "\n") + "\n"
    }
}
