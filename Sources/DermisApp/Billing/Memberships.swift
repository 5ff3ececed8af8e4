import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A membership the clinic offers: a monthly price with so many treatment sessions included each month, or a discount
/// on what the member is invoiced, or both.
final class MembershipPlan: Model, @unchecked Sendable {
    static let schema = "membership_plan"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "name") var name: String
    @Field(key: "monthly_price") var monthlyPrice: Int64
    @Field(key: "included_sessions") var includedSessions: Int
    /// A discount on the member's invoices for services, in basis points (1000 = 10 %).
    @Field(key: "discount_basis_points") var discountBasisPoints: Int
    @Field(key: "active") var active: Bool
    @Field(key: "created_at") var createdAt: Date

    init() {}
}

/// A patient's membership, its terms frozen when it started. It runs in monthly periods from its first day; each new
/// period is invoiced when it begins. Cancelled, it runs to the end of the period already paid and then ends.
final class Membership: Model, @unchecked Sendable {
    static let schema = "membership"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "plan_id") var planID: UUID
    @Field(key: "name") var name: String
    @Field(key: "monthly_price") var monthlyPrice: Int64
    @Field(key: "included_sessions") var includedSessions: Int
    @Field(key: "discount_basis_points") var discountBasisPoints: Int
    @Field(key: "started_on") var startedOn: String
    /// The period paid for now, `YYYY-MM-DD` both included.
    @Field(key: "period_start") var periodStart: String
    @Field(key: "period_end") var periodEnd: String
    /// `active` or `ended`.
    @Field(key: "status") var status: String
    /// Set when cancelled: the last day it runs (the end of the period paid for).
    @OptionalField(key: "ends_on") var endsOn: String?
    @OptionalField(key: "cancelled_at") var cancelledAt: Date?
    @OptionalField(key: "cancelled_by") var cancelledBy: UUID?
    @Field(key: "periods") var periods: Int
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "created_by") var createdBy: UUID

    init() {}
}

/// One included session used by a signed chart, in the membership period it fell in (once per chart).
final class MembershipUse: Model, @unchecked Sendable {
    static let schema = "membership_use"

    @ID(key: .id) var id: UUID?
    @Parent(key: "membership_id") var membership: Membership
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "period_start") var periodStart: String
    @Field(key: "used_at") var usedAt: Date

    init() {}
}

struct CreateMemberships: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(MembershipPlan.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("name", .string, .required)
            .field("monthly_price", .int64, .required)
            .field("included_sessions", .int, .required)
            .field("discount_basis_points", .int, .required)
            .field("active", .bool, .required)
            .field("created_at", .datetime, .required)
            .create()
        try await database.schema(Membership.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("plan_id", .uuid, .required, .references(MembershipPlan.schema, .id))
            .field("name", .string, .required)
            .field("monthly_price", .int64, .required)
            .field("included_sessions", .int, .required)
            .field("discount_basis_points", .int, .required)
            .field("started_on", .string, .required)
            .field("period_start", .string, .required)
            .field("period_end", .string, .required)
            .field("status", .string, .required)
            .field("ends_on", .string)
            .field("cancelled_at", .datetime)
            .field("cancelled_by", .uuid)
            .field("periods", .int, .required)
            .field("created_at", .datetime, .required)
            .field("created_by", .uuid, .required)
            .create()
        try await database.schema(MembershipUse.schema)
            .id()
            .field("membership_id", .uuid, .required, .references(Membership.schema, .id))
            .field("chart_id", .uuid, .required)
            .field("period_start", .string, .required)
            .field("used_at", .datetime, .required)
            .unique(on: "chart_id")
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX membership_patient ON \(ident: Membership.schema) (patient_id, status)").run()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(MembershipUse.schema).delete()
        try await database.schema(Membership.schema).delete()
        try await database.schema(MembershipPlan.schema).delete()
    }
}

/// Monthly periods: the n-th period starts n months after the first day (a 31st falls back to a shorter month's last
/// day) and ends the day before the next one starts.
enum MembershipPeriod {
    static func start(_ first: CalendarDate, period n: Int) -> CalendarDate { first.adding(months: n) }
    static func end(_ first: CalendarDate, period n: Int) -> CalendarDate { first.adding(months: n + 1).adding(days: -1) }
}

/// Memberships for one clinic: joining (the first month invoiced), renewing each month as it begins, cancelling to the
/// end of the month paid for, and the included sessions signed charts use.
struct Memberships {
    let clinicID: UUID
    let now: Date
    private let base: any Database

    init(db: any Database, clinicID: UUID, now: Date) {
        self.base = db
        self.clinicID = clinicID
        self.now = now
    }

    var db: any Database { Writes.current?.db ?? base }

    private func invoice(_ membership: Membership, period n: Int, by staffID: UUID) async throws -> Invoice {
        guard let first = CalendarDate(iso: membership.startedOn) else { throw Abort(.internalServerError) }
        let store = InvoiceStore(db: db, clinicID: clinicID)
        guard let billing = try await store.billing() else {
            throw DomainError.conflict("The clinic has no currency set yet: an admin chooses it under billing first.")
        }
        let rate = TaxRate(basisPoints: billing.defaultTaxBasisPoints ?? 0) ?? .zero
        let line = InvoiceLine(description: "Membership: \(membership.name), \(MembershipPeriod.start(first, period: n)) to \(MembershipPeriod.end(first, period: n))",
                               quantity: 1, unitPrice: membership.monthlyPrice, taxRate: rate)
        let patient = try await Patient.require(membership.$patient.id, on: db)
        return try await store.issue([line], patientID: patient.id, billedTo: patient.fullName, by: staffID, at: now)
    }

    /// The patient joins `plan` from `startOn` (today or later): the first month is invoiced at once.
    func join(_ plan: MembershipPlan, patient: Patient, startOn: CalendarDate, today: CalendarDate, by staffID: UUID) async throws -> Membership {
        guard plan.active, plan.$clinic.id == clinicID else { throw InvalidInput(path: "plan", problem: "is not a membership this clinic offers") }
        guard startOn >= today, today.days(until: startOn) <= 90 else { throw InvalidInput(path: "startOn", problem: "must be from today to 90 days ahead") }
        let patientID = try patient.requireID()
        return try await Writes.transaction(db) { db in
            // The patient's row first: two presses at once take turns, so one membership is made.
            try await Patient.lockRow(patientID, on: db)
            if try await Membership.query(on: db).filter(\.$patient.$id == patientID).filter(\.$status == "active").count() > 0 {
                throw DomainError.conflict("The patient already has a membership; cancel it first.")
            }
            let membership = Membership()
            membership.$clinic.id = clinicID
            membership.$patient.id = patientID
            membership.planID = try plan.requireID()
            membership.name = plan.name
            membership.monthlyPrice = plan.monthlyPrice
            membership.includedSessions = plan.includedSessions
            membership.discountBasisPoints = plan.discountBasisPoints
            membership.startedOn = startOn.description
            membership.periodStart = startOn.description
            membership.periodEnd = MembershipPeriod.end(startOn, period: 0).description
            membership.status = "active"
            membership.periods = 1
            membership.createdAt = now
            membership.createdBy = staffID
            try await membership.create(on: db)
            _ = try await invoice(membership, period: 0, by: staffID)
            return membership
        }
    }

    /// Cancels: it runs to the end of the period paid for and then ends; nothing more is invoiced.
    func cancel(_ membershipID: UUID, by staffID: UUID) async throws -> Membership {
        guard let membership = try await Membership.query(on: db).filter(\.$id == membershipID).filter(\.$clinic.$id == clinicID).first() else {
            throw DomainError.notFound("No such membership.")
        }
        guard membership.status == "active", membership.endsOn == nil else { throw DomainError.conflict("This membership is cancelled already.") }
        // Conditional on the month read: a renewal at the same moment makes this a 409 to try again, never a cancellation
        // dated to a month already over while the next one was invoiced.
        try await ConditionalUpdate(Membership.self, id: membershipID, on: db).where(\.$status, .equal, "active").whereNull(\.$endsOn)
            .where(\.$periodEnd, .equal, membership.periodEnd)
            .set(\.$endsOn, to: membership.periodEnd).set(\.$cancelledAt, to: now).set(\.$cancelledBy, to: staffID)
            .run(orThrow: DomainError.conflict("This membership changed meanwhile."))
        return try await Membership.require(membershipID, on: db)
    }

    /// Moves every membership whose period is over into its next period — invoiced — or, if cancelled, ends it; a
    /// server that was down for months catches up period by period. Each step is its own unit of work, conditional on
    /// the period it read: two servers renewing at once invoice once.
    @discardableResult
    func renewDue(today: CalendarDate) async throws -> Int {
        var renewed = 0
        for _ in 0..<36 {
            let due = try await Membership.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$status == "active")
                .filter(\.$periodEnd < today.description).all()
            if due.isEmpty { break }
            for membership in due where try await step(membership) { renewed += 1 }
        }
        return renewed
    }

    /// One membership into its next period (true: invoiced), or ended.
    private func step(_ membership: Membership) async throws -> Bool {
        guard let first = CalendarDate(iso: membership.startedOn) else { return false }
        let id = try membership.requireID()
        do {
            return try await Writes.transaction(db) { db in
                if let ends = membership.endsOn, ends <= membership.periodEnd {
                    try await ConditionalUpdate(Membership.self, id: id, on: db).where(\.$periodEnd, .equal, membership.periodEnd)
                        .set(\.$status, to: "ended").run(orThrow: DomainError.conflict("changed"))
                    return false
                }
                let n = membership.periods
                try await ConditionalUpdate(Membership.self, id: id, on: db).where(\.$periodEnd, .equal, membership.periodEnd)
                    .set(\.$periodStart, to: MembershipPeriod.start(first, period: n).description)
                    .set(\.$periodEnd, to: MembershipPeriod.end(first, period: n).description)
                    .set(\.$periods, to: n + 1)
                    .run(orThrow: DomainError.conflict("changed"))
                _ = try await invoice(membership, period: n, by: Deposits.issuedByDermis)
                return true
            }
        } catch DomainError.conflict {
            return false   // Another server moved it on first.
        }
    }

    /// A signed chart uses one of the sessions included this month, if the patient's membership has one left.
    @discardableResult
    func use(chart: TreatmentSession, day: CalendarDate) async throws -> Membership? {
        try await Patient.lockRow(chart.$patient.id, on: db)
        guard try await MembershipUse.query(on: db).filter(\.$chartID == chart.chartID).count() == 0,
              let membership = try await Membership.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == chart.$patient.id)
                .filter(\.$status == "active").first(),
              membership.includedSessions > 0, membership.periodStart <= day.description, day.description <= membership.periodEnd else { return nil }
        let used = try await MembershipUse.query(on: db).filter(\.$membership.$id == membership.requireID())
            .filter(\.$periodStart == membership.periodStart).count()
        guard used < membership.includedSessions else { return nil }
        let use = MembershipUse()
        use.$membership.id = try membership.requireID()
        use.chartID = chart.chartID
        use.periodStart = membership.periodStart
        use.usedAt = now
        try await use.create(on: db)
        return membership
    }

    /// The member's price of `price`, and the words that say so; unchanged without an active discount.
    func memberPrice(_ price: Int64, patientID: UUID) async throws -> (Int64, String?) {
        guard let membership = try await Membership.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == patientID)
            .filter(\.$status == "active").first(), membership.discountBasisPoints > 0 else { return (price, nil) }
        let off = MoneyMath.divide(try MoneyMath.multiply(price, Int64(membership.discountBasisPoints)), by: 10_000)
        return (price - off, "member price, \(TaxRate(basisPoints: membership.discountBasisPoints)?.percentText ?? "") % off")
    }

    struct Line: Encodable {
        let id: String
        let name: String
        let started: String
        let period: String
        let included: String
        let discount: String
        let next: String
        let status: String
        let canCancel: Bool
    }

    func lines(patientID: UUID) async throws -> [Line] {
        let all = try await Membership.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == patientID).sort(\.$createdAt).all()
        var lines: [Line] = []
        for m in all {
            let used = try await MembershipUse.query(on: db).filter(\.$membership.$id == m.requireID()).filter(\.$periodStart == m.periodStart).count()
            let next = m.status == "ended" ? "ended on \(m.endsOn ?? m.periodEnd)"
                : m.endsOn.map { "cancelled; runs until \($0)" } ?? "renews on \(CalendarDate(iso: m.periodEnd)?.adding(days: 1).description ?? "")"
            lines.append(Line(id: m.id!.uuidString, name: m.name, started: m.startedOn, period: "\(m.periodStart) to \(m.periodEnd)",
                              included: m.includedSessions > 0 ? "\(max(0, m.includedSessions - used)) of \(m.includedSessions) this month" : "none",
                              discount: m.discountBasisPoints > 0 ? "\(TaxRate(basisPoints: m.discountBasisPoints)?.percentText ?? "") %" : "none",
                              next: next, status: m.status, canCancel: m.status == "active" && m.endsOn == nil))
        }
        return lines
    }
}

/// Renews memberships as their months begin, while the server runs.
struct MembershipWorker: Sendable {
    let app: Application

    func runOnce() async throws -> Int {
        var renewed = 0
        for clinic in try await Clinic.query(on: app.db).all() {
            let today = CalendarDate(app.dermis.clock.now(), in: clinic.zone)
            renewed += try await Memberships(db: app.db, clinicID: try clinic.requireID(), now: app.dermis.clock.now()).renewDue(today: today)
        }
        return renewed
    }

    func loop(interval: Duration = .seconds(300)) async {
        while !Task.isCancelled {
            do { _ = try await runOnce() } catch {
                app.logger.error("The membership pass failed: \(String(reflecting: type(of: error)))")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
