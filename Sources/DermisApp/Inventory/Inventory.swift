import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A pen the clinic owns, with the protocol's device profile it follows.
final class Device: Model, @unchecked Sendable {
    static let schema = "device"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "model") var model: String
    @Field(key: "serial") var serial: String
    @Field(key: "profile") var profile: String
    @Field(key: "active") var active: Bool
    @Field(key: "created_at") var createdAt: Date
    /// Where the pen is kept and booked (absent: not bookable yet).
    @OptionalParent(key: "location_id") var location: Location?

    init() {}
}

/// Sterile single-use cartridges received by lot: stock goes down as they are charted; a lot can be recalled.
final class CartridgeLot: Model, @unchecked Sendable {
    static let schema = "cartridge_lot"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "lot_number") var lotNumber: String
    @Field(key: "expiry") var expiry: String
    @Field(key: "needle_count") var needleCount: Int
    @Field(key: "quantity_received") var quantityReceived: Int
    @Field(key: "quantity_remaining") var quantityRemaining: Int
    @Field(key: "received_at") var receivedAt: Date
    @OptionalField(key: "recalled_at") var recalledAt: Date?
    @OptionalField(key: "recall_reason") var recallReason: String?

    init() {}

    /// Why this lot cannot be charted today, or nil when it can.
    func problem(on today: CalendarDate) -> String? {
        if recalledAt != nil { return "lot \(lotNumber) is recalled" }
        if let expires = CalendarDate(iso: expiry), expires < today { return "lot \(lotNumber) expired on \(expiry)" }
        if quantityRemaining <= 0 { return "lot \(lotNumber) is used up" }
        return nil
    }
}

struct CreateInventory: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(Device.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("model", .string, .required)
            .field("serial", .string, .required)
            .field("profile", .string, .required)
            .field("active", .bool, .required)
            .field("created_at", .datetime, .required)
            .unique(on: "clinic_id", "serial")
            .create()
        try await database.schema(CartridgeLot.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("lot_number", .string, .required)
            .field("expiry", .string, .required)
            .field("needle_count", .int, .required)
            .field("quantity_received", .int, .required)
            .field("quantity_remaining", .int, .required)
            .field("received_at", .datetime, .required)
            .field("recalled_at", .datetime)
            .field("recall_reason", .string)
            .unique(on: "clinic_id", "lot_number")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(CartridgeLot.schema).delete()
        try await database.schema(Device.schema).delete()
    }
}

/// The clinic's pens and cartridge stock.
struct Inventory {
    private let database: UnitOfWorkDatabase
    let clinicID: UUID

    init(db: any Database, clinicID: UUID) {
        database = UnitOfWorkDatabase(db)
        self.clinicID = clinicID
    }

    var db: any Database { database.current }

    func devices(activeOnly: Bool = false) async throws -> [Device] {
        var query = Device.query(on: db).filter(\.$clinic.$id == clinicID)
        if activeOnly { query = query.filter(\.$active == true) }
        return try await query.sort(\.$model).sort(\.$serial).all()
    }

    func lots() async throws -> [CartridgeLot] {
        try await CartridgeLot.query(on: db).filter(\.$clinic.$id == clinicID).sort(\.$expiry).all()
    }

    func device(_ id: UUID) async throws -> Device {
        guard let device = try await Device.query(on: db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).first() else {
            throw DomainError.notFound("No such pen.")
        }
        return device
    }

    func lot(_ id: UUID) async throws -> CartridgeLot {
        guard let lot = try await CartridgeLot.query(on: db).filter(\.$id == id).filter(\.$clinic.$id == clinicID).first() else {
            throw DomainError.notFound("No such cartridge lot.")
        }
        return lot
    }

    func register(model: String, serial: String, profile: String, protocol p: ClinicalProtocol, at now: Date) async throws -> Device {
        var issues: [FieldIssue] = []
        let model = model.trimmingCharacters(in: .whitespaces), serial = serial.trimmingCharacters(in: .whitespaces)
        if model.isEmpty { issues.append(FieldIssue(path: "model", problem: "is required")) }
        if serial.isEmpty { issues.append(FieldIssue(path: "serial", problem: "is required")) }
        issues += [TextLimits.issue(model, "model", max: TextLimits.short), TextLimits.issue(serial, "serial", max: TextLimits.short)].compactMap { $0 }
        if p.device(profile) == nil {
            issues.append(FieldIssue(path: "profile", problem: "unknown device profile '\(profile)'; valid: \(p.devices.map(\.id).joined(separator: ", "))"))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let device = Device()
        device.$clinic.id = clinicID
        device.model = model
        device.serial = serial
        device.profile = profile
        device.active = true
        device.createdAt = now
        do {
            try await Writes.savepoint(db) { db in try await device.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw InvalidInput(path: "serial", problem: "a pen with serial '\(serial)' is already registered")
        }
        return device
    }

    func receive(lotNumber: String, expiry: String, needleCount: String, quantity: String, today: CalendarDate, at now: Date) async throws -> CartridgeLot {
        var issues: [FieldIssue] = []
        let number = lotNumber.trimmingCharacters(in: .whitespaces)
        if number.isEmpty || number.count > 64 { issues.append(FieldIssue(path: "lotNumber", problem: "is required (at most 64 characters)")) }
        let expires = CalendarDate(iso: expiry.trimmingCharacters(in: .whitespaces))
        if expires == nil { issues.append(FieldIssue(path: "expiry", problem: "'\(expiry)' is not a real date (YYYY-MM-DD)")) }
        else if expires! < today { issues.append(FieldIssue(path: "expiry", problem: "the lot expired on \(expiry); do not receive it")) }
        let needles = Int(needleCount.trimmingCharacters(in: .whitespaces))
        if needles == nil || !(1...100).contains(needles!) { issues.append(FieldIssue(path: "needleCount", problem: "must be a whole number of needles (1–100)")) }
        let count = Int(quantity.trimmingCharacters(in: .whitespaces))
        if count == nil || !(1...100_000).contains(count!) { issues.append(FieldIssue(path: "quantity", problem: "must be a whole number of cartridges (1–100000)")) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let lot = CartridgeLot()
        lot.$clinic.id = clinicID
        lot.lotNumber = number
        lot.expiry = expires!.description
        lot.needleCount = needles!
        lot.quantityReceived = count!
        lot.quantityRemaining = count!
        lot.receivedAt = now
        do {
            try await Writes.savepoint(db) { db in try await lot.create(on: db) }
        } catch let error as any DatabaseError where error.isConstraintFailure {
            throw InvalidInput(path: "lotNumber", problem: "lot '\(number)' is already in stock")
        }
        return lot
    }

    /// Takes one cartridge from a lot for charting, atomically; refuses a recalled, expired or used-up lot.
    func takeCartridge(from id: UUID, today: CalendarDate) async throws -> CartridgeLot {
        let lot = try await lot(id)
        if let problem = lot.problem(on: today) { throw InvalidInput(path: "lot", problem: problem) }
        try await ConditionalUpdate(CartridgeLot.self, id: id, on: db)
            .set(\.$quantityRemaining, adding: -1)
            .where(\.$quantityRemaining, .greaterThan, 0)
            .whereNull(\.$recalledAt)
            .run(orThrow: InvalidInput(path: "lot", problem: "lot \(lot.lotNumber) is used up or recalled"))
        return try await self.lot(id)
    }

    func recall(_ id: UUID, reason: String, at now: Date) async throws -> CartridgeLot {
        let lot = try await lot(id)
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { throw InvalidInput(path: "reason", problem: "say why the lot is recalled") }
        if let issue = TextLimits.issue(trimmed, "reason", max: TextLimits.reason) { throw InvalidInput([issue]) }
        // One conditional update: two recalls at once cannot both record theirs.
        try await ConditionalUpdate(CartridgeLot.self, id: id, on: db)
            .whereNull(\.$recalledAt)
            .set(\.$recalledAt, to: now)
            .set(\.$recallReason, to: trimmed)
            .run(orThrow: DomainError.conflict("Lot \(lot.lotNumber) is already recalled."))
        return try await self.lot(id)
    }
}
