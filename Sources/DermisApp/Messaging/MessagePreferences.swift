import DermisCore
import Fluent
import SQLKit
import Vapor

/// How a patient wants to hear from the clinic: by e-mail (the default), by text message — only with their consent on
/// record, when and how it was given — or not at all. A STOP reply to a text ends text messages (`smsStoppedAt`) until
/// the patient replies START. Kept apart from the patient record: a choice about messages, not a clinical change.
final class MessagePreference: Model, @unchecked Sendable {
    static let schema = "message_preference"
    /// How staff may record that a patient agreed to text messages.
    static let consentWays = ["in person", "on the phone", "signed form", "online form"]

    enum Channel: String, CaseIterable, Sendable { case email, sms, none }

    /// The patient's id.
    @ID(custom: .id, generatedBy: .user) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "channel") var channel: String
    @OptionalField(key: "sms_consent_at") var smsConsentAt: Date?
    @OptionalField(key: "sms_consent_how") var smsConsentHow: String?
    /// The staff member who recorded the consent; nil when the patient gave it themselves (START).
    @OptionalField(key: "sms_consent_by") var smsConsentBy: UUID?
    @OptionalField(key: "sms_stopped_at") var smsStoppedAt: Date?
    @Field(key: "updated_at") var updatedAt: Date
    @OptionalField(key: "updated_by") var updatedBy: UUID?

    init() {}

    init(patient: Patient, at now: Date) {
        id = patient.id
        $clinic.id = patient.$clinic.id
        channel = Channel.email.rawValue
        updatedAt = now
    }

    var preferred: Channel { Channel(rawValue: channel) ?? .email }
    var maySendSMS: Bool { smsConsentAt != nil && smsStoppedAt == nil }
}

/// The patient's channel and consent; the message's channel; the token of a patient's link sealed so that later
/// invitations can carry it; the clinic's reminder and quiet-hour settings and its templates.
struct MessageChannels: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(OutboxMessage.schema).field("channel", .string).update()
        try await database.schema(PatientLink.schema).field("token_sealed", .string).update()
        try await database.schema(MessagePreference.schema)
            .field(.id, .uuid, .identifier(auto: false))
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("channel", .string, .required)
            .field("sms_consent_at", .datetime)
            .field("sms_consent_how", .string)
            .field("sms_consent_by", .uuid)
            .field("sms_stopped_at", .datetime)
            .field("updated_at", .datetime, .required)
            .field("updated_by", .uuid)
            .create()
        try await database.schema(ClinicMessaging.schema)
            .field(.id, .uuid, .identifier(auto: false))
            .field("reminder_hours", .string, .required)
            .field("quiet_start_hour", .int, .required)
            .field("quiet_end_hour", .int, .required)
            .field("updated_at", .datetime, .required)
            .field("updated_by", .uuid, .required)
            .create()
        try await database.schema(MessageTemplate.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("kind", .string, .required)
            .field("subject", .string, .required)
            .field("body", .string, .required)
            .field("sms", .string, .required)
            .field("updated_at", .datetime, .required)
            .field("updated_by", .uuid, .required)
            .unique(on: "clinic_id", "kind")
            .create()
        if let sql = database as? any SQLDatabase {
            try await sql.raw("CREATE INDEX patient_phone ON patient (phone_e164)").run()
        }
    }

    func revert(on database: any Database) async throws {
        if let sql = database as? any SQLDatabase { try await sql.raw("DROP INDEX patient_phone").run() }
        try await database.schema(MessageTemplate.schema).delete()
        try await database.schema(ClinicMessaging.schema).delete()
        try await database.schema(MessagePreference.schema).delete()
        try await database.schema(PatientLink.schema).deleteField("token_sealed").update()
        try await database.schema(OutboxMessage.schema).deleteField("channel").update()
    }
}

/// Where a message to a patient goes: their chosen channel when it can be used, else e-mail when there is an address.
enum MessageRoute: Equatable {
    case email(String)
    case sms(String)

    var channel: MessagePreference.Channel {
        switch self {
        case .email: .email
        case .sms: .sms
        }
    }

    var recipient: String {
        switch self {
        case .email(let address), .sms(let address): address
        }
    }

    /// The route for a patient (nil: no record, e.g. a booking made online before the patient is registered), with the
    /// contact details at hand. nil when they chose no messages, or there is no way to reach them.
    static func to(patient patientID: UUID?, email: String?, phone: String?, on db: any Database) async throws -> MessageRoute? {
        let address = email?.trimmingCharacters(in: .whitespaces) ?? ""
        let byEmail: MessageRoute? = MailMessage.isDeliverable(address) ? .email(address) : nil
        guard let patientID, let preference = try await MessagePreference.find(patientID, on: db) else { return byEmail }
        switch preference.preferred {
        case .none: return nil
        case .email: return byEmail
        case .sms:
            // A text only with consent and no STOP since; otherwise e-mail, so a booking is never left unconfirmed.
            let number = phone?.trimmingCharacters(in: .whitespaces) ?? ""
            guard preference.maySendSMS, PhoneNumber.isE164(number) else { return byEmail }
            return .sms(number)
        }
    }
}

/// A patient's messages, for staff: their channel and text-message consent, an e-mail opt-out (and undoing it when the
/// patient asks), and every message written to them with where it is. Any staff role: front desk keeps contact details.
struct MessagePreferencesController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "MessagePreference")
        let messages = routes.grouped("patients", ":patientID", "messages")
        messages.get(use: show).access(rule)
        messages.grouped(UnitOfWorkMiddleware()).post(use: save).access(rule)
        messages.grouped(UnitOfWorkMiddleware()).post("resume-email", use: resumeEmail).access(rule)
    }

    struct Page: Encodable {
        let page: PageHeader
        let patientID: String
        let name: String
        let phone: String
        let email: String
        let channels: [Option]
        let consentWays: [Option]
        let consent: String?
        let stopped: String?
        let emailStopped: String?
        let smsConfigured: Bool
        let errors: [ErrorLine]
        let messages: [OutboxController.Row]
        let saved: Bool
    }

    struct Form: Content {
        var channel: String?
        var smsConsent: String?
        var consentHow: String?
        var withdrawConsent: String?
    }

    private func patient(_ req: Request) async throws -> Patient {
        try await PatientRegistry(db: req.db, clinicID: try req.staff().clinicID).find(try req.patientID())
    }

    func show(req: Request) async throws -> View {
        try await render(req, errors: [], form: nil)
    }

    private func render(_ req: Request, errors: [ErrorLine], form: Form?) async throws -> View {
        let (patient, preference, optOut, messages) = try await req.audited(.read, objectType: "MessagePreference") {
            let patient = try await self.patient(req)
            let id = try patient.requireID()
            return (patient, try await MessagePreference.find(id, on: req.db), try await MessageOptOut.find(id, on: req.db),
                    try await OutboxMessage.query(on: req.db).filter(\.$patientID == id).sort(\.$createdAt, .descending).limit(50).all())
        }
        let zone = try await req.clinic()?.zone ?? .current
        let chosen = form?.channel ?? preference?.channel ?? MessagePreference.Channel.email.rawValue
        let consent = preference?.smsConsentAt.map { "given \(LocalTime.words($0, in: zone)), \(preference?.smsConsentHow ?? "")" }
        return try await req.view.render("patient-messages", Page(
            page: try await PageHeader(req, title: "Messages"), patientID: try patient.requireID().uuidString, name: patient.fullName,
            phone: patient.phoneE164 ?? "", email: patient.email ?? "",
            channels: MessagePreference.Channel.allCases.map { Option(id: $0.rawValue, name: Self.label($0), selected: $0.rawValue == chosen) },
            consentWays: MessagePreference.consentWays.map { Option(id: $0, name: $0, selected: $0 == form?.consentHow) },
            consent: consent, stopped: preference?.smsStoppedAt.map { LocalTime.words($0, in: zone) },
            emailStopped: optOut.map { LocalTime.words($0.at, in: zone) }, smsConfigured: req.application.mail.sms != nil,
            errors: errors, messages: messages.map(OutboxController.row), saved: (try? req.query.get(String.self, at: "saved")) != nil))
    }

    static func label(_ channel: MessagePreference.Channel) -> String {
        switch channel {
        case .email: "E-mail"
        case .sms: "Text message (SMS)"
        case .none: "No messages"
        }
    }

    func save(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(Form.self)
        do {
            try await req.audited(.update, objectType: "MessagePreference", objectID: try req.patientID().uuidString, patientID: try req.patientID()) {
                let patient = try await self.patient(req)
                let now = req.dermis.clock.now()
                guard let channel = MessagePreference.Channel(rawValue: form.channel ?? "") else {
                    throw InvalidInput(path: "channel", problem: "choose e-mail, text message or no messages")
                }
                let preference = try await MessagePreference.find(try patient.requireID(), on: req.db) ?? MessagePreference(patient: patient, at: now)
                if form.withdrawConsent == "on" {
                    preference.smsConsentAt = nil
                    preference.smsConsentHow = nil
                    preference.smsConsentBy = nil
                }
                if form.smsConsent == "on" {
                    guard let how = form.consentHow, MessagePreference.consentWays.contains(how) else {
                        throw InvalidInput(path: "consentHow", problem: "say how the patient agreed to text messages")
                    }
                    preference.smsConsentAt = now
                    preference.smsConsentHow = how
                    preference.smsConsentBy = staff.userID
                }
                if channel == .sms {
                    guard req.application.mail.sms != nil else {
                        throw InvalidInput(path: "channel", problem: "no SMS provider is configured on this server (DERMIS_SMS_URL): choose e-mail")
                    }
                    guard PhoneNumber.isE164(patient.phoneE164 ?? "") else {
                        throw InvalidInput(path: "channel", problem: "text messages need a mobile number on the record (E.164, e.g. +14155550100)")
                    }
                    guard preference.smsConsentAt != nil else {
                        throw InvalidInput(path: "smsConsent", problem: "text messages need the patient's consent: record when and how they gave it")
                    }
                    guard preference.smsStoppedAt == nil else {
                        throw InvalidInput(path: "channel", problem: "the patient replied STOP to a text; only their START reply turns texts back on")
                    }
                }
                preference.channel = channel.rawValue
                preference.updatedAt = now
                preference.updatedBy = staff.userID
                try await preference.save(on: req.db)
            }
        } catch let invalid as InvalidInput {
            return try await render(req, errors: ErrorLine.list(invalid), form: form).response(.unprocessableEntity, for: req)
        }
        return req.redirect(to: "/patients/\(try req.patientID())/messages?saved=1", redirectType: .normal)
    }

    /// The patient asked for e-mail again after unsubscribing: staff undo the opt-out, audited.
    func resumeEmail(req: Request) async throws -> Response {
        let id = try req.patientID()
        try await req.audited(.update, objectType: "MessageOptOut", objectID: id.uuidString, patientID: id) {
            _ = try await self.patient(req)
            try await MessageOptOut.query(on: req.db).filter(\.$id == id).delete()
        }
        return req.redirect(to: "/patients/\(id)/messages?saved=1", redirectType: .normal)
    }
}
