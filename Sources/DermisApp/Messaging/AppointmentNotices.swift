import DermisCore
import Fluent
import Foundation
import Vapor

/// What a patient is told about their booking — confirmed (with the .ics), moved, cancelled, and reminded before it —
/// written to the outbox in the same unit of work as the change it is about, by the patient's channel and in the
/// clinic's wording. Times are in the location's zone; the text names the service, place and phone, never anything
/// clinical.
enum AppointmentNotices {
    enum Kind: Equatable, Sendable {
        case confirmed, moved, cancelled
        /// A reminder so many hours before the start.
        case reminder(hours: Int)

        var rawValue: String {
            switch self {
            case .confirmed: "booking-confirmed"
            case .moved: "booking-moved"
            case .cancelled: "booking-cancelled"
            case .reminder(let hours): "reminder-\(hours)h"
            }
        }

        var template: MessageKind {
            switch self {
            case .confirmed: .bookingConfirmed
            case .moved: .bookingMoved
            case .cancelled: .bookingCancelled
            case .reminder: .reminder
            }
        }

        /// Whether it may wait for the morning: a reminder 12 hours or more ahead does; one just before the visit, and
        /// news of a change the patient must act on, do not.
        var keepsQuietHours: Bool {
            if case .reminder(let hours) = self { return hours >= 12 }
            return false
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

    /// The values a booking message's template fills.
    static func values(_ a: Appointment, location: Location, service: Service, clinic: Clinic) -> [String: String] {
        ["name": a.contactName, "clinic": clinic.name, "service": service.name.lowercased(), "when": LocalTime.words(a.startsAt, in: location.zone),
         "location": location.name, "address": location.address.isEmpty ? location.name : location.address,
         "phone": location.phone.isEmpty ? "the clinic" : location.phone]
    }

    /// Queues `kind` for the booking by the patient's channel; returns the message, or nil when there is no one to write
    /// to (or the patient chose no messages). `id` fixes the message's id (reminders: one per booking and lead, whoever
    /// writes it first).
    @discardableResult
    static func queue(_ kind: Kind, for a: Appointment, on db: any Database, now: Date, id: UUID? = nil) async throws -> OutboxMessage? {
        guard let (route, location, service, clinic) = try await context(a, on: db) else { return nil }
        let clinicID = a.$clinic.id
        let rendered = try await RenderedMessage.render(kind.template, values(a, location: location, service: service, clinic: clinic), clinic: clinicID, on: db)
        let attach = kind == .confirmed || kind == .moved || kind == .cancelled
        let notBefore = kind.keepsQuietHours ? try await MessagingRules.load(clinic: clinicID, on: db).quiet.end(after: now, in: location.zone) : nil
        return try await rendered.queue(by: route, clinic: clinicID, patient: a.$patient.id, kind: kind.rawValue, at: now, notBefore: notBefore,
                                        calendar: attach ? try invite(a, location: location, service: service, clinicName: clinic.name, now: now).ics : nil,
                                        about: a.id, id: id, on: db)
    }

    /// One message for a series booked at once — every session's time, and one calendar file holding them all —
    /// instead of one confirmation per session. In the caller's unit of work.
    @discardableResult
    static func queueSeries(_ sessions: [Appointment], on db: any Database, now: Date) async throws -> OutboxMessage? {
        guard let a = sessions.first, let (route, location, service, clinic) = try await context(a, on: db) else { return nil }
        let clinicID = a.$clinic.id
        var values = values(a, location: location, service: service, clinic: clinic)
        values["count"] = "\(sessions.count)"
        values["dates"] = sessions.map { "– " + LocalTime.words($0.startsAt, in: location.zone) }.joined(separator: "\n")
        let invites = try sessions.map { try invite($0, location: location, service: service, clinicName: clinic.name, now: now) }
        return try await RenderedMessage.render(.seriesBooked, values, clinic: clinicID, on: db)
            .queue(by: route, clinic: clinicID, patient: a.$patient.id, at: now, calendar: CalendarInvite.calendar(invites), about: a.seriesID, on: db)
    }

    /// Who a booking's message goes to and what it names; nil when there is no one to write to.
    private static func context(_ a: Appointment, on db: any Database) async throws
        -> (MessageRoute, Location, Service, Clinic)? {
        guard let route = try await MessageRoute.to(patient: a.$patient.id, email: a.contactEmail, phone: a.contactPhone, on: db) else { return nil }
        return (route, try await Location.require(a.$location.id, on: db), try await Service.require(a.$service.id, on: db),
                try await Clinic.require(a.$clinic.id, on: db))
    }

    /// The reminder's id for a booking and lead: the same whichever server writes it, so it is written once.
    static func reminderID(_ appointment: UUID, _ kind: Kind) -> UUID { stableID("\(appointment.uuidString)/\(kind.rawValue)") }

    /// A UUID that is a function of `name` (SHA-256, version-5 style): a message every server would write gets one id.
    static func stableID(_ name: String) -> UUID {
        let digest = Array(SHA256.hash(data: Data(name.utf8)))
        var bytes = Array(digest.prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Writes the reminders now due: for each booked appointment starting within its clinic's longest lead, each lead
    /// whose time has come and that was not already past when the booking was made. Idempotent across passes and servers.
    static func scheduleReminders(on db: any Database, now: Date) async throws -> Int {
        let rules = Dictionary(uniqueKeysWithValues: try await ClinicMessaging.query(on: db).all().compactMap { stored in
            stored.id.map { ($0, MessagingRules(stored)) }
        })
        let longest = (rules.values.flatMap(\.reminderHours) + MessagingRules.standard.reminderHours).max() ?? 0
        let horizon = now.addingTimeInterval(Double(longest) * 3600)
        // This runs on every outbox pass: bookings with no one to write to are left out in the query, and the
        // reminders already written are found in one query, not one per booking.
        // Text-only bookings are those of patients who chose texts (a short list), not every booking with a phone.
        let texting = try await MessagePreference.query(on: db).filter(\.$channel == MessagePreference.Channel.sms.rawValue)
            .filter(\.$smsStoppedAt == nil).all().compactMap(\.id)
        let upcoming = try await Appointment.query(on: db).filter(\.$status == AppointmentStatus.booked.rawValue)
            .filter(\.$startsAt > now).filter(\.$startsAt <= horizon)
            .group(.or) { either in
                either.filter(\.$contactEmail != "")
                if !texting.isEmpty { either.filter(\.$patient.$id ~~ texting) }
            }.all()
        var due: [(Appointment, Kind, UUID)] = []
        for appointment in upcoming {
            for hours in (rules[appointment.$clinic.id] ?? .standard).reminderHours {
                let kind = Kind.reminder(hours: hours)
                let at = appointment.startsAt.addingTimeInterval(-Double(hours) * 3600)
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

/// The hours, in a location's own zone, when a message that can wait does: from `startHour` to `endHour` (over
/// midnight when the start is later than the end). The clinic sets them; 21:00–08:00 by default.
struct QuietHours: Sendable, Equatable {
    var startHour: Int
    var endHour: Int

    func isQuiet(hour: Int) -> Bool {
        startHour > endHour ? (hour >= startHour || hour < endHour) : (hour >= startHour && hour < endHour)
    }

    /// nil when `instant` is outside quiet hours, else the hour they end.
    func end(after instant: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        guard startHour != endHour, isQuiet(hour: calendar.component(.hour, from: instant)) else { return nil }
        return calendar.nextDate(after: instant, matching: DateComponents(hour: endHour, minute: 0, second: 0), matchingPolicy: .nextTime)
    }
}
