import DermisCore
import Fluent
import Foundation
import Vapor

/// A clinic's own wording of one kind of patient message: subject and text for e-mail, and the text message.
final class MessageTemplate: Model, @unchecked Sendable {
    static let schema = "message_template"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "kind") var kind: String
    @Field(key: "subject") var subject: String
    @Field(key: "body") var body: String
    @Field(key: "sms") var sms: String
    @Field(key: "updated_at") var updatedAt: Date
    @Field(key: "updated_by") var updatedBy: UUID

    init() {}
}

/// A clinic's reminder leads and quiet hours; absent, the defaults.
final class ClinicMessaging: Model, @unchecked Sendable {
    static let schema = "clinic_messaging"

    /// The clinic's id.
    @ID(custom: .id, generatedBy: .user) var id: UUID?
    /// Hours before an appointment a reminder goes out, comma-separated, e.g. `48,2`.
    @Field(key: "reminder_hours") var reminderHours: String
    @Field(key: "quiet_start_hour") var quietStartHour: Int
    @Field(key: "quiet_end_hour") var quietEndHour: Int
    @Field(key: "updated_at") var updatedAt: Date
    @Field(key: "updated_by") var updatedBy: UUID

    init() {}
}

/// What a clinic's messages follow: reminder leads and quiet hours, with the defaults for a clinic that set none.
struct MessagingRules: Sendable, Equatable {
    var reminderHours: [Int]
    var quiet: QuietHours

    /// 48 and 2 hours before, as the issue that built reminders asked; quiet 21:00–08:00 (a conservative clinic default,
    /// not from a source).
    static let standard = MessagingRules(reminderHours: [48, 2], quiet: QuietHours(startHour: 21, endHour: 8))
    static let maximumReminderHours = 14 * 24

    init(reminderHours: [Int], quiet: QuietHours) {
        self.reminderHours = reminderHours
        self.quiet = quiet
    }

    init(_ stored: ClinicMessaging?) {
        guard let stored, let hours = try? Self.parseHours(stored.reminderHours) else { self = .standard; return }
        self.init(reminderHours: hours, quiet: QuietHours(startHour: stored.quietStartHour, endHour: stored.quietEndHour))
    }

    /// `48, 2` → [48, 2]: one to four distinct whole hours from 1 to two weeks; an empty list sends no reminders.
    static func parseHours(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var hours: [Int] = []
        for part in parts {
            guard let n = Int(part), (1...maximumReminderHours).contains(n) else {
                throw InvalidInput(path: "reminderHours", problem: "'\(part)' is not a whole number of hours from 1 to \(maximumReminderHours)")
            }
            guard !hours.contains(n) else { throw InvalidInput(path: "reminderHours", problem: "\(n) hours is listed twice") }
            hours.append(n)
        }
        guard hours.count <= 4 else { throw InvalidInput(path: "reminderHours", problem: "at most 4 reminders per appointment") }
        return hours.sorted(by: >)
    }

    static func load(clinic: UUID, on db: any Database) async throws -> MessagingRules {
        MessagingRules(try await ClinicMessaging.find(clinic, on: db))
    }
}

/// The patient messages a clinic may word itself, with the placeholders each offers. Values are plain text; the
/// e-mail's HTML part escapes the whole rendered text, so a name like `<b>` shows as typed; substitution is one pass,
/// so a value that itself looks like `{{link}}` stays text.
enum MessageKind: String, CaseIterable, Sendable {
    case bookingConfirm = "booking-confirm"
    case bookingConfirmed = "booking-confirmed"
    case seriesBooked = "series-booked"
    case bookingMoved = "booking-moved"
    case bookingCancelled = "booking-cancelled"
    case reminder
    case aftercareLink = "aftercare-link"
    case checkIn = "check-in"
    case checkInOverdue = "check-in-overdue"
    case rateResult = "rate-result"
    case portalSignIn = "portal-sign-in"
    case waitlistOffer = "waitlist-offer"
    case waitlistGone = "waitlist-gone"

    var title: String {
        switch self {
        case .bookingConfirm: "Confirm an online booking"
        case .bookingConfirmed: "Booking confirmed"
        case .seriesBooked: "A series of sessions booked"
        case .bookingMoved: "Booking moved"
        case .bookingCancelled: "Booking cancelled"
        case .reminder: "Appointment reminder"
        case .aftercareLink: "Aftercare link after a session"
        case .checkIn: "Check-in invitation"
        case .checkInOverdue: "Check-in overdue"
        case .rateResult: "Rate the result (end of a series)"
        case .portalSignIn: "Sign-in link to the patient's own pages"
        case .waitlistOffer: "An earlier time offered from the waitlist"
        case .waitlistGone: "A time offered from the waitlist was taken"
        }
    }

    private static let booking = ["name", "clinic", "service", "when", "location", "address", "phone"]

    /// The placeholders this kind fills.
    var variables: [String] {
        switch self {
        case .bookingConfirm: Self.booking + ["link", "minutes"]
        case .bookingConfirmed, .bookingMoved, .bookingCancelled, .reminder: Self.booking
        case .seriesBooked: ["name", "clinic", "service", "location", "address", "phone", "count", "dates"]
        case .aftercareLink: ["name", "clinic", "link", "until"]
        case .checkIn, .checkInOverdue: ["name", "clinic", "link", "day"]
        case .rateResult: ["name", "clinic", "link"]
        case .portalSignIn: ["name", "clinic", "link", "minutes"]
        case .waitlistOffer: Self.booking + ["link"]
        case .waitlistGone: Self.booking
        }
    }

    /// Placeholders a template must keep: without them the message would not do its job.
    var required: [String] { variables.contains("link") ? ["link"] : [] }

    /// Values to preview a template with.
    var sample: [String: String] {
        let all = ["name": "Noor", "clinic": "Harbour Skin", "service": "Microneedling — full face", "when": "Tue 1 Dec, 10:00",
                   "location": "Harbour Street", "address": "12 Harbour Street", "phone": "+44 20 7946 0000",
                   "link": "https://clinic.example/care/…", "minutes": "\(SchedulingService.holdMinutes)", "until": "2026-12-29", "day": "3",
                   "count": "3", "dates": "– Tue 1 Dec, 10:00\n– Tue 29 Dec, 10:00\n– Tue 26 Jan, 10:00"]
        return all.filter { variables.contains($0.key) }
    }

    var standard: (subject: String, body: String, sms: String) {
        let change = "To change or cancel, call {{phone}}."
        switch self {
        case .bookingConfirm:
            return ("Confirm your booking at {{clinic}}",
                    "Hello {{name}},\n\nPlease confirm your {{service}} on {{when}} at {{location}} within {{minutes}} minutes, or the time is released:\n{{link}}\n\n\(change)",
                    "{{clinic}}: confirm your booking on {{when}} within {{minutes}} minutes: {{link}}")
        case .bookingConfirmed:
            return ("Your booking at {{clinic}} is confirmed", "Hello {{name}},\n\nYour {{service}} is booked for {{when}} at {{location}}.\n\n\(change)",
                    "{{clinic}}: your {{service}} is booked for {{when}} at {{location}}. \(change)")
        case .seriesBooked:
            return ("Your {{count}} sessions at {{clinic}} are booked",
                    "Hello {{name}},\n\nYour {{count}} {{service}} sessions are booked at {{location}}, {{address}}:\n{{dates}}\n\n"
                        + "The calendar file attached holds them all. We remind you before each one. \(change)",
                    "{{clinic}}: your {{count}} {{service}} sessions are booked at {{location}}:\n{{dates}}\n\(change)")
        case .bookingMoved:
            return ("Your booking at {{clinic}} has moved", "Hello {{name}},\n\nYour {{service}} has moved to {{when}} at {{location}}.\n\n\(change)",
                    "{{clinic}}: your {{service}} has moved to {{when}} at {{location}}. \(change)")
        case .bookingCancelled:
            return ("Your booking at {{clinic}} is cancelled", "Hello {{name}},\n\nYour {{service}} on {{when}} is cancelled.\n\n\(change)",
                    "{{clinic}}: your {{service}} on {{when}} is cancelled. To book again, call {{phone}}.")
        case .reminder:
            return ("Reminder: {{service}} at {{clinic}}, {{when}}",
                    "Hello {{name}},\n\nA reminder of your {{service}} on {{when}} at {{location}}, {{address}}.\n\n"
                        + "Please come with clean skin, without make-up. If anything about your health or medicines has changed since your last visit, "
                        + "please tell us before the appointment.\n\n\(change)",
                    "{{clinic}}: reminder of your {{service}} on {{when}} at {{location}}. Come with clean skin, no make-up. Health or medicines changed? Tell us first. \(change)")
        case .aftercareLink:
            return ("Your aftercare from {{clinic}}",
                    "Hello {{name}},\n\nYour aftercare for this session, day by day, and a short daily check-in are on your personal page:\n{{link}}\n\n"
                        + "The link is yours alone and works until {{until}}. If something worries you, call the clinic.",
                    "{{clinic}}: your aftercare, day by day, and a daily check-in: {{link}} (yours alone, until {{until}})")
        case .checkIn:
            return ("Day {{day}} after your session: how is your skin?",
                    "Hello {{name}},\n\nIt is day {{day}} after your session at {{clinic}}. Please tell us how your skin is — it takes a minute:\n{{link}}\n\n"
                        + "If something worries you, call the clinic.",
                    "{{clinic}}: day {{day}} after your session — how is your skin? {{link}}")
        case .checkInOverdue:
            return ("We have not heard from you since your session",
                    "Hello {{name}},\n\nWe asked how your skin was on day {{day}} after your session at {{clinic}} and have not heard back. "
                        + "Please check in — it takes a minute:\n{{link}}\n\nIf something worries you, call the clinic.",
                    "{{clinic}}: we have not heard how your skin is since day {{day}}. Please check in: {{link}}")
        case .rateResult:
            return ("How do you rate your result?",
                    "Hello {{name}},\n\nYour series of sessions at {{clinic}} is complete. How do you rate the result? One question, on your personal page:\n{{link}}",
                    "{{clinic}}: your series is complete. How do you rate the result? {{link}}")
        case .waitlistOffer:
            return ("An earlier time at {{clinic}}: {{when}}",
                    "Hello {{name}},\n\nA {{service}} time has come free on {{when}} at {{location}}. It is offered to a few people waiting; "
                        + "the first to take it gets it. To take it:\n{{link}}\n\nIf it does not suit you, do nothing: you stay on the waitlist.",
                    "{{clinic}}: a {{service}} time is free on {{when}} at {{location}}. First to take it gets it: {{link}}")
        case .waitlistGone:
            return ("The time on {{when}} has been taken",
                    "Hello {{name}},\n\nThe {{service}} time on {{when}} that we offered you has been taken by someone else. "
                        + "You are still on the waitlist; we will write when another time comes free.",
                    "{{clinic}}: the {{service}} time on {{when}} has been taken. You are still on the waitlist.")
        case .portalSignIn:
            return ("Your sign-in link for {{clinic}}",
                    "Hello {{name}},\n\nHere is your link to sign in to your pages at {{clinic}}. It works once, within {{minutes}} minutes:\n{{link}}\n\n"
                        + "If you did not ask for it, ignore this message: nobody can sign in without the link.",
                    "{{clinic}}: your sign-in link (works once, {{minutes}} minutes): {{link}} — if you did not ask for it, ignore this.")
        }
    }
}

/// `{{name}}` placeholders: checked (unknown names, unclosed braces, required ones missing) and filled in one pass.
enum TemplateText {
    /// Problems with `text` as the template field `field` for `kind`, each naming the field and where.
    static func issues(_ text: String, field: String, kind: MessageKind) -> [FieldIssue] {
        var issues: [FieldIssue] = []
        var used: Set<String> = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                issues.append(FieldIssue(path: field, problem: "'{{' at character \(text.distance(from: text.startIndex, to: open.lowerBound) + 1) is never closed with '}}'"))
                break
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if kind.variables.contains(name) {
                used.insert(name)
            } else {
                issues.append(FieldIssue(path: field, problem: "{{\(name)}} is not a placeholder of this message; use \(kind.variables.map { "{{\($0)}}" }.joined(separator: ", "))"))
            }
            rest = rest[close.upperBound...]
        }
        if field != "subject" {
            for name in kind.required where !used.contains(name) {
                issues.append(FieldIssue(path: field, problem: "must keep {{\(name)}}: without it the message does not do its job"))
            }
        }
        return issues
    }

    /// The text with each known placeholder replaced by its value (one pass: values are never read as placeholders).
    static func render(_ text: String, _ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            out += rest[..<open.lowerBound]
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            out += values[name] ?? ""
            rest = rest[close.upperBound...]
        }
        return out + rest
    }
}

/// A patient message rendered from the clinic's template (or the standard one) — ready for the outbox on either channel.
struct RenderedMessage: Sendable {
    let kind: MessageKind
    let subject: String
    let body: String
    let sms: String

    static func render(_ kind: MessageKind, _ values: [String: String], clinic: UUID, on db: any Database) async throws -> RenderedMessage {
        let stored = try await MessageTemplate.query(on: db).filter(\.$clinic.$id == clinic).filter(\.$kind == kind.rawValue).first()
        let standard = kind.standard
        return RenderedMessage(kind: kind,
                               subject: TemplateText.render(stored?.subject ?? standard.subject, values).replacingOccurrences(of: "\n", with: " "),
                               body: TemplateText.render(stored?.body ?? standard.body, values),
                               sms: TemplateText.render(stored?.sms ?? standard.sms, values))
    }

    /// Writes the message to the outbox by `route` (a text gets the SMS wording and no attachment). In the caller's unit
    /// of work.
    @discardableResult
    func queue(by route: MessageRoute, clinic: UUID, patient: UUID?, kind: String? = nil, at now: Date, notBefore: Date? = nil,
               calendar: String? = nil, about: UUID? = nil, id: UUID? = nil, on db: any Database) async throws -> OutboxMessage {
        let sms = route.channel == .sms
        let message = OutboxMessage(clinicID: clinic, recipient: route.recipient, subject: subject, body: sms ? self.sms : body,
                                    kind: kind ?? self.kind.rawValue, at: now, notBefore: notBefore, calendar: sms ? nil : calendar, about: about)
        if let id { message.id = id }
        message.channel = route.channel.rawValue
        message.patientID = patient
        try await message.create(on: db)
        return message
    }
}
