import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A place the clinic treats, with its own time zone: every wall-clock time of its calendar is in that zone.
final class Location: Model, @unchecked Sendable {
    static let schema = "location"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "name") var name: String
    @Field(key: "time_zone") var timeZone: String
    @Field(key: "address") var address: String
    @Field(key: "phone") var phone: String
    @Field(key: "active") var active: Bool

    init() {}

    var zone: TimeZone { TimeZone(identifier: timeZone) ?? TimeZone(identifier: "UTC")! }
}

final class Room: Model, @unchecked Sendable {
    static let schema = "room"

    @ID(key: .id) var id: UUID?
    @Parent(key: "location_id") var location: Location
    @Field(key: "name") var name: String
    @Field(key: "active") var active: Bool

    init() {}
}

/// A practitioner's weekly hours (or breaks) at a location, on its wall clock.
final class WorkingHours: Model, @unchecked Sendable {
    static let schema = "working_hours"

    @ID(key: .id) var id: UUID?
    @Parent(key: "staff_id") var staff: StaffUser
    @Parent(key: "location_id") var location: Location
    /// `hours` or `break`.
    @Field(key: "kind") var kind: String
    @Field(key: "weekday") var weekday: Int
    @Field(key: "start_minute") var startMinute: Int
    @Field(key: "end_minute") var endMinute: Int

    init() {}
}

/// A whole day a location is closed.
final class Closure: Model, @unchecked Sendable {
    static let schema = "closure"

    @ID(key: .id) var id: UUID?
    @Parent(key: "location_id") var location: Location
    @Field(key: "day") var day: String
    @Field(key: "reason") var reason: String

    init() {}
}

/// Time a practitioner is away (leave, training), in real time.
final class StaffLeave: Model, @unchecked Sendable {
    static let schema = "staff_leave"

    @ID(key: .id) var id: UUID?
    @Parent(key: "staff_id") var staff: StaffUser
    @Field(key: "starts_at") var startsAt: Date
    @Field(key: "ends_at") var endsAt: Date
    @Field(key: "reason") var reason: String

    init() {}
}

/// What can be booked. A treatment's length comes from the engine for the zones chosen; the others are fixed.
final class Service: Model, @unchecked Sendable {
    static let schema = "service"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "code") var code: String
    @Field(key: "name") var name: String
    /// `consultation`, `treatment` or `review`.
    @Field(key: "kind") var kind: String
    @OptionalField(key: "minutes") var minutes: Int?
    @Field(key: "buffer_minutes") var bufferMinutes: Int
    @Field(key: "needs_pen") var needsPen: Bool
    /// Offered on the public booking page.
    @Field(key: "public") var isPublic: Bool
    /// The price (minor units of the clinic's currency) and tax rate (basis points) it is invoiced at; nil: not set.
    @OptionalField(key: "price_minor") var priceMinor: Int64?
    @OptionalField(key: "tax_basis_points") var taxBasisPoints: Int?

    init() {}

    var isTreatment: Bool { kind == "treatment" }
}

/// Which practitioners may do a service.
final class ServiceQualification: Model, @unchecked Sendable {
    static let schema = "service_qualification"

    @ID(key: .id) var id: UUID?
    @Parent(key: "staff_id") var staff: StaffUser
    @Parent(key: "service_id") var service: Service

    init() {}
}

enum AppointmentStatus: String, CaseIterable, Sendable {
    /// Held from the public page until the patient confirms (or the hold lapses).
    case pending
    case booked
    case checkedIn = "checked-in"
    case completed
    case noShow = "no-show"
    case cancelled
    /// A pending hold that lapsed unconfirmed.
    case expired

    /// Statuses that hold practitioner, room and pen (what the database's no-overlap guard covers).
    static let holding: [AppointmentStatus] = [.pending, .booked, .checkedIn, .completed, .noShow]
    static let holdingSQL = "(" + holding.map { "'\($0.rawValue)'" }.joined(separator: ",") + ")"
}

/// A booking: a service at a location with a practitioner, a room and (for treatments) a pen, from start to end;
/// it holds them until `holdsUntil` (end plus the service's buffer). No two holding bookings of one resource overlap
/// — the database enforces it (docs/SECURITY.md R14).
final class Appointment: Model, @unchecked Sendable {
    static let schema = "appointment"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "location_id") var location: Location
    @OptionalParent(key: "patient_id") var patient: Patient?
    @Field(key: "contact_name") var contactName: String
    @Field(key: "contact_email") var contactEmail: String
    @Field(key: "contact_phone") var contactPhone: String
    @Parent(key: "service_id") var service: Service
    @Field(key: "zones") var zones: String
    @Field(key: "practitioner_id") var practitionerID: UUID
    @Field(key: "room_id") var roomID: UUID
    @OptionalField(key: "pen_id") var penID: UUID?
    @Field(key: "starts_at") var startsAt: Date
    @Field(key: "ends_at") var endsAt: Date
    @Field(key: "holds_until") var holdsUntil: Date
    @Field(key: "status") var status: String
    /// `staff` or `public`.
    @Field(key: "source") var source: String
    @OptionalField(key: "confirm_token_hash") var confirmTokenHash: String?
    @OptionalField(key: "hold_expires_at") var holdExpiresAt: Date?
    @OptionalField(key: "series_id") var seriesID: UUID?
    @Field(key: "notes") var notes: String
    @Field(key: "version") var version: Int
    @Field(key: "created_at") var createdAt: Date
    @OptionalField(key: "created_by") var createdBy: UUID?
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    var zoneList: [String] { zones.split(separator: ",").map(String.init) }
    var appointmentStatus: AppointmentStatus? { AppointmentStatus(rawValue: status) }
}

/// A message for the outbox (confirmation links, reminders, set-password links): written in the same transaction as
/// what it is about, sent by the outbox worker (`Messaging/Outbox.swift`).
final class OutboxMessage: Model, @unchecked Sendable {
    static let schema = "message"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "recipient") var recipient: String
    @Field(key: "subject") var subject: String
    @Field(key: "body") var body: String
    /// `queued`, `sending` (claimed by a worker), `retry`, `sent` or `dead` (see `OutboxStatus`).
    @Field(key: "status") var status: String
    @Field(key: "created_at") var createdAt: Date
    /// What it is (`booking-confirm`, `password-link`, `reminder`…), for the outbox page and to send each reminder once.
    @OptionalField(key: "kind") var kind: String?
    /// Sending attempts so far.
    @OptionalField(key: "attempts") var attempts: Int?
    /// Not sent before this (a retry's backoff, a reminder's time); `created_at` when unset.
    @OptionalField(key: "not_before") var notBefore: Date?
    /// A worker's claim on a message it is sending; a claim that lapsed (the worker died) is taken over.
    @OptionalField(key: "claimed_until") var claimedUntil: Date?
    @OptionalField(key: "sent_at") var sentAt: Date?
    /// What the transport answered last, or why the message is not being sent.
    @OptionalField(key: "last_error") var lastError: String?
    /// An iCalendar invitation to attach.
    @OptionalField(key: "calendar") var calendar: String?
    /// What it is about (an appointment, a session), so a reminder is written once.
    @OptionalField(key: "subject_id") var subjectID: UUID?
    /// The patient it is written to, when it is one with a record: their opt-out is honoured at sending.
    @OptionalField(key: "patient_id") var patientID: UUID?
    /// `email` (also when unset) or `sms`: the recipient is then a phone number.
    @OptionalField(key: "channel") var channel: String?

    init() {}

    var isSMS: Bool { channel == MessagePreference.Channel.sms.rawValue }

    init(clinicID: UUID, recipient: String, subject: String, body: String, kind: String, at now: Date,
         notBefore: Date? = nil, calendar: String? = nil, about subjectID: UUID? = nil) {
        self.id = UUID()
        self.$clinic.id = clinicID
        self.recipient = recipient
        self.subject = subject
        self.body = body
        self.status = OutboxStatus.queued.rawValue
        self.createdAt = now
        self.kind = kind
        self.attempts = 0
        self.notBefore = notBefore
        self.calendar = calendar
        self.subjectID = subjectID
    }
}

struct CreateScheduling: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(Location.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("name", .string, .required)
            .field("time_zone", .string, .required)
            .field("address", .string, .required)
            .field("phone", .string, .required)
            .field("active", .bool, .required)
            .unique(on: "clinic_id", "name")
            .create()
        try await database.schema(Room.schema)
            .id()
            .field("location_id", .uuid, .required, .references(Location.schema, .id))
            .field("name", .string, .required)
            .field("active", .bool, .required)
            .unique(on: "location_id", "name")
            .create()
        try await database.schema(Device.schema)
            .field("location_id", .uuid, .references(Location.schema, .id))
            .update()
        try await database.schema(WorkingHours.schema)
            .id()
            .field("staff_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("location_id", .uuid, .required, .references(Location.schema, .id))
            .field("kind", .string, .required)
            .field("weekday", .int, .required)
            .field("start_minute", .int, .required)
            .field("end_minute", .int, .required)
            .create()
        try await database.schema(Closure.schema)
            .id()
            .field("location_id", .uuid, .required, .references(Location.schema, .id))
            .field("day", .string, .required)
            .field("reason", .string, .required)
            .unique(on: "location_id", "day")
            .create()
        try await database.schema(StaffLeave.schema)
            .id()
            .field("staff_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("starts_at", .datetime, .required)
            .field("ends_at", .datetime, .required)
            .field("reason", .string, .required)
            .create()
        try await database.schema(Service.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("code", .string, .required)
            .field("name", .string, .required)
            .field("kind", .string, .required)
            .field("minutes", .int)
            .field("buffer_minutes", .int, .required)
            .field("needs_pen", .bool, .required)
            .field("public", .bool, .required)
            .unique(on: "clinic_id", "code")
            .create()
        try await database.schema(ServiceQualification.schema)
            .id()
            .field("staff_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("service_id", .uuid, .required, .references(Service.schema, .id))
            .unique(on: "staff_id", "service_id")
            .create()
        try await database.schema(Appointment.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("location_id", .uuid, .required, .references(Location.schema, .id))
            .field("patient_id", .uuid, .references(Patient.schema, .id))
            .field("contact_name", .string, .required)
            .field("contact_email", .string, .required)
            .field("contact_phone", .string, .required)
            .field("service_id", .uuid, .required, .references(Service.schema, .id))
            .field("zones", .string, .required)
            .field("practitioner_id", .uuid, .required, .references(StaffUser.schema, .id))
            .field("room_id", .uuid, .required, .references(Room.schema, .id))
            .field("pen_id", .uuid, .references(Device.schema, .id))
            .field("starts_at", .datetime, .required)
            .field("ends_at", .datetime, .required)
            .field("holds_until", .datetime, .required)
            .field("status", .string, .required)
            .field("source", .string, .required)
            .field("confirm_token_hash", .string)
            .field("hold_expires_at", .datetime)
            .field("series_id", .uuid)
            .field("notes", .string, .required)
            .field("version", .int, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid)
            .field("updated_at", .datetime, .required)
            .create()
        try await database.schema(OutboxMessage.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("recipient", .string, .required)
            .field("subject", .string, .required)
            .field("body", .string, .required)
            .field("status", .string, .required)
            .field("created_at", .datetime, .required)
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX appointment_practitioner_time ON appointment (practitioner_id, starts_at)").run()
        try await sql.raw("CREATE INDEX appointment_room_time ON appointment (room_id, starts_at)").run()
        try await sql.raw("CREATE INDEX appointment_location_time ON appointment (location_id, starts_at)").run()
        if sql.dialect.name != "sqlite" {
            // R14 on PostgreSQL: no two holding bookings of one practitioner, room or pen overlap in time.
            try await sql.raw("CREATE EXTENSION IF NOT EXISTS btree_gist").run()
            for column in ["practitioner_id", "room_id", "pen_id"] {
                try await sql.raw("""
                    ALTER TABLE appointment ADD CONSTRAINT appointment_\(unsafeRaw: column)_no_overlap
                    EXCLUDE USING gist (\(unsafeRaw: column) WITH =, tstzrange(starts_at, holds_until, '[)') WITH &&)
                    WHERE (status IN \(unsafeRaw: AppointmentStatus.holdingSQL))
                    """).run()
            }
        }
    }

    func revert(on database: any Database) async throws {
        for schema in [OutboxMessage.schema, Appointment.schema, ServiceQualification.schema, Service.schema, StaffLeave.schema,
                       Closure.schema, WorkingHours.schema] {
            try await database.schema(schema).delete()
        }
        try await database.schema(Device.schema).deleteField("location_id").update()
        for schema in [Room.schema, Location.schema] {
            try await database.schema(schema).delete()
        }
    }
}
