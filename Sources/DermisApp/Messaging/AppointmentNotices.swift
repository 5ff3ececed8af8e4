import DermisCore
import Fluent
import Foundation
import Vapor

/// What a patient is told about their booking by e-mail — confirmed (with the .ics), moved, cancelled, and reminded
/// before it — written to the outbox in the same unit of work as the change it is about. Times are in the location's
/// zone; the text names the service, place and phone, never anything clinical.
enum AppointmentNotices {
    enum Kind: String, CaseIterable {
        case confirmed = "booking-confirmed", moved = "booking-moved", cancelled = "booking-cancelled"
        case reminder48h = "reminder-48h", reminder2h = "reminder-2h"

        /// Whether it may wait for the morning: not during quiet hours in the location's zone.
        var keepsQuietHours: Bool { self == .reminder48h }

        /// How long before the start a reminder goes out.
        var lead: TimeInterval? {
            switch self {
            case .reminder48h: 48 * 3600
            case .reminder2h: 2 * 3600
            default: nil
            }
        }
    }

    /// The booking's invitation: the clinic, the service and the location — no clinical details.
    static func invite(_ a: Appointment, location: Location, service: Service, clinicName: String, now: Date) throws -> CalendarInvite {
        CalendarInvite(
            uid: "\(try a.requireID().uuidString.lowercased())@dermis", start: a.startsAt, end: a.endsAt,
            summary: "\(service.name) at \(clinicName)", location: [location.name, location.address].filter { !$0.isEmpty }.joined(separator: ", "),
            description: "\(service.name) at \(location.name). To change or cancel, call \(location.phone.isEmpty ? "the clinic" : location.phone).",
            timeZone: location.zone, stamp: now, cancelled: a.appointmentStatus == .cancelled)
    }

    /// Queues `kind` for the booking when it has an e-mail address; returns the message, or nil when there is no one to
    /// write to. `id` fixes the message's id (reminders: one per booking and lead, whoever writes it first).
    @discardableResult
    static func queue(_ kind: Kind, for a: Appointment, on db: any Database, now: Date, id: UUID? = nil) async throws -> OutboxMessage? {
        let email = a.contactEmail.trimmingCharacters(in: .whitespaces)
        guard !email.isEmpty, MailMessage.isDeliverable(email) else { return nil }
        let location = try await Location.require(a.$location.id, on: db)
        let service = try await Service.require(a.$service.id, on: db)
        let clinic = try await Clinic.require(a.$clinic.id, on: db)
        let when = LocalTime.words(a.startsAt, in: location.zone)
        let call = location.phone.isEmpty ? "call the clinic" : "call \(location.phone)"
        let (subject, lead): (String, String) = switch kind {
        case .confirmed: ("Your booking at \(clinic.name) is confirmed", "your \(service.name.lowercased()) is booked for \(when) at \(location.name).")
        case .moved: ("Your booking at \(clinic.name) has moved", "your \(service.name.lowercased()) has moved to \(when) at \(location.name).")
        case .cancelled: ("Your booking at \(clinic.name) is cancelled", "your \(service.name.lowercased()) on \(when) is cancelled.")
        case .reminder48h, .reminder2h: ("Reminder: \(service.name) at \(clinic.name), \(when)",
                                         "a reminder of your \(service.name.lowercased()) on \(when) at \(location.name)\(location.address.isEmpty ? "" : ", \(location.address)").")
        }
        var body = "Hello \(a.contactName),\n\n\(lead.prefix(1).uppercased() + lead.dropFirst())\n\n"
        if kind == .reminder48h || kind == .reminder2h {
            body += "If anything about your health or medicines has changed since your last visit, please tell us before the appointment.\n\n"
        }
        body += "To change or cancel, \(call)."
        let attach = kind == .confirmed || kind == .moved || kind == .cancelled
        let notBefore = kind.keepsQuietHours ? QuietHours.end(after: now, in: location.zone) : nil
        let message = OutboxMessage(clinicID: clinic.id!, recipient: email, subject: subject, body: body, kind: kind.rawValue, at: now,
                                    notBefore: notBefore,
                                    calendar: attach ? try invite(a, location: location, service: service, clinicName: clinic.name, now: now).ics : nil,
                                    about: a.id)
        if let id { message.id = id }
        message.patientID = a.$patient.id
        try await message.create(on: db)
        return message
    }

    /// The reminder's id for a booking and lead: the same whichever server writes it, so it is written once.
    static func reminderID(_ appointment: UUID, _ kind: Kind) -> UUID {
        let digest = Array(SHA256.hash(data: Data("\(appointment.uuidString)/\(kind.rawValue)".utf8)))
        var bytes = Array(digest.prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50  // version 5-style
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Writes the reminders now due: for each booked appointment starting within 48 hours, each lead whose time has come
    /// and that was not already past when the booking was made. Idempotent across passes and servers.
    static func scheduleReminders(on db: any Database, now: Date) async throws -> Int {
        let leads = Kind.allCases.compactMap { kind in kind.lead.map { (kind, $0) } }
        let horizon = now.addingTimeInterval(leads.map(\.1).max() ?? 0)
        // This runs on every outbox pass: bookings with no one to write to are left out in the query, and the
        // reminders already written are found in one query, not one per booking.
        let upcoming = try await Appointment.query(on: db).filter(\.$status == AppointmentStatus.booked.rawValue)
            .filter(\.$startsAt > now).filter(\.$startsAt <= horizon).filter(\.$contactEmail != "").all()
        var due: [(Appointment, Kind, UUID)] = []
        for appointment in upcoming {
            for (kind, lead) in leads {
                let at = appointment.startsAt.addingTimeInterval(-lead)
                guard at <= now, appointment.createdAt < at else { continue }
                due.append((appointment, kind, reminderID(try appointment.requireID(), kind)))
            }
        }
        guard !due.isEmpty else { return 0 }
        let written = Set(try await OutboxMessage.query(on: db).filter(\.$id ~~ due.map(\.2)).all().compactMap(\.id))
        var count = 0
        for (appointment, kind, id) in due where !written.contains(id) {
            do {
                try await Writes.transaction(db) { tx in
                    if try await queue(kind, for: appointment, on: tx, now: now, id: id) != nil { count += 1 }
                }
            } catch let error as any DatabaseError where error.isConstraintFailure {
                continue  // another server wrote it first
            }
        }
        return count
    }
}

/// The night, in a location's own zone, when a message that can wait does: 21:00 to 08:00 (a conservative clinic
/// default, not from a source).
enum QuietHours {
    static let startHour = 21
    static let endHour = 8

    /// `instant` itself outside quiet hours, else the morning they end (nil when no wait is needed).
    static func end(after instant: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let hour = calendar.component(.hour, from: instant)
        guard hour >= startHour || hour < endHour else { return nil }
        let day = hour >= startHour ? calendar.date(byAdding: .day, value: 1, to: instant)! : instant
        return calendar.date(bySettingHour: endHour, minute: 0, second: 0, of: day)
    }
}
