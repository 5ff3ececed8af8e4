import Fluent
import Foundation
import Vapor

/// The clinic this server runs: its name, its time zone (dates are local to it), and whether it is the demo.
final class Clinic: Model, @unchecked Sendable {
    static let schema = "clinic"

    @ID(key: .id) var id: UUID?
    @Field(key: "name") var name: String
    @Field(key: "time_zone") var timeZone: String
    @Field(key: "is_demo") var isDemo: Bool
    /// Hours before an appointment under which a cancellation is late (reports; the patient's own pages). Unset: the
    /// default, a common med-spa policy and not a clinical figure.
    @OptionalField(key: "cancellation_notice_hours") var cancellationNoticeHours: Int?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?

    init() {}

    init(name: String, timeZone: String, isDemo: Bool) {
        self.name = name
        self.timeZone = timeZone
        self.isDemo = isDemo
    }

    static let defaultNoticeHours = 24

    /// The clinic's zone; UTC if the stored identifier is not one this system knows.
    var zone: TimeZone { TimeZone(identifier: timeZone) ?? TimeZone(identifier: "UTC")! }
}

struct CreateClinic: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(Clinic.schema)
            .id()
            .field("name", .string, .required)
            .field("time_zone", .string, .required)
            .field("is_demo", .bool, .required)
            .field("created_at", .datetime)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(Clinic.schema).delete()
    }
}
