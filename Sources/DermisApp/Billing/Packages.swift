import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A package the clinic sells: so many sessions of a service (for an indication, or any), at a price, valid so many
/// days from the sale. Retired offers stay for the packages already sold from them.
final class PackageOffer: Model, @unchecked Sendable {
    static let schema = "package_offer"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "name") var name: String
    @Parent(key: "service_id") var service: Service
    /// A protocol indication id; nil: any indication.
    @OptionalField(key: "indication") var indication: String?
    @Field(key: "sessions") var sessions: Int
    @Field(key: "price") var price: Int64
    @Field(key: "validity_days") var validityDays: Int
    @Field(key: "active") var active: Bool
    @Field(key: "created_at") var createdAt: Date

    init() {}

    static let maximumSessions = 12
    static let maximumValidityDays = 3 * 365
}

/// A package sold to a patient, with its terms frozen at the sale. Each signed chart of its service (and indication)
/// redeems one session, the earliest-expiring package first; unused sessions can be refunded by the clinic's rule.
final class PatientPackage: Model, @unchecked Sendable {
    static let schema = "patient_package"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Parent(key: "patient_id") var patient: Patient
    @Field(key: "offer_id") var offerID: UUID
    @Field(key: "name") var name: String
    @Field(key: "service_id") var serviceID: UUID
    @OptionalField(key: "indication") var indication: String?
    @Field(key: "sessions") var sessions: Int
    @Field(key: "price") var price: Int64
    @Field(key: "currency") var currency: String
    /// The last day it can be used (in the clinic's calendar), `YYYY-MM-DD`.
    @Field(key: "expires_on") var expiresOn: String
    @Field(key: "invoice_id") var invoiceID: UUID
    /// `active`, or `refunded` (its unused sessions given back; closed).
    @Field(key: "status") var status: String
    @Field(key: "refunded_sessions") var refundedSessions: Int
    @OptionalField(key: "credit_note_id") var creditNoteID: UUID?
    @Field(key: "sold_at") var soldAt: Date
    @Field(key: "sold_by") var soldBy: UUID

    init() {}
}

/// One session of a package used by a signed chart. A chart redeems at most one session (unique chart id).
final class PackageRedemption: Model, @unchecked Sendable {
    static let schema = "package_redemption"

    @ID(key: .id) var id: UUID?
    @Parent(key: "package_id") var package: PatientPackage
    @Field(key: "chart_id") var chartID: UUID
    @Field(key: "practitioner_id") var practitionerID: UUID
    @Field(key: "redeemed_at") var redeemedAt: Date

    init() {}
}

struct CreatePackages: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(PackageOffer.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("name", .string, .required)
            .field("service_id", .uuid, .required, .references(Service.schema, .id))
            .field("indication", .string)
            .field("sessions", .int, .required)
            .field("price", .int64, .required)
            .field("validity_days", .int, .required)
            .field("active", .bool, .required)
            .field("created_at", .datetime, .required)
            .create()
        try await database.schema(PatientPackage.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("patient_id", .uuid, .required, .references(Patient.schema, .id))
            .field("offer_id", .uuid, .required, .references(PackageOffer.schema, .id))
            .field("name", .string, .required)
            .field("service_id", .uuid, .required, .references(Service.schema, .id))
            .field("indication", .string)
            .field("sessions", .int, .required)
            .field("price", .int64, .required)
            .field("currency", .string, .required)
            .field("expires_on", .string, .required)
            .field("invoice_id", .uuid, .required, .references(Invoice.schema, .id))
            .field("status", .string, .required)
            .field("refunded_sessions", .int, .required)
            .field("credit_note_id", .uuid, .references(Invoice.schema, .id))
            .field("sold_at", .datetime, .required)
            .field("sold_by", .uuid, .required)
            .create()
        try await database.schema(PackageRedemption.schema)
            .id()
            .field("package_id", .uuid, .required, .references(PatientPackage.schema, .id))
            .field("chart_id", .uuid, .required)
            .field("practitioner_id", .uuid, .required)
            .field("redeemed_at", .datetime, .required)
            .unique(on: "chart_id")
            .create()
        try await database.schema(ClinicBilling.schema).field("package_refund_rule", .string).update()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX patient_package_patient ON \(ident: PatientPackage.schema) (patient_id, status)").run()
        try await sql.raw("CREATE INDEX package_redemption_package ON \(ident: PackageRedemption.schema) (package_id)").run()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(ClinicBilling.schema).deleteField("package_refund_rule").update()
        try await database.schema(PackageRedemption.schema).delete()
        try await database.schema(PatientPackage.schema).delete()
        try await database.schema(PackageOffer.schema).delete()
    }
}

/// How a clinic refunds a package's unused sessions: `pro-rata` (the default) gives back the package price per unused
/// session; `single-price` reprices the used sessions at the service's single-session price and gives back the rest
/// (never below nothing).
enum PackageRefundRule: String, CaseIterable, Sendable {
    case proRata = "pro-rata"
    case singlePrice = "single-price"

    var words: String {
        switch self {
        case .proRata: "Pro rata: the package price per unused session"
        case .singlePrice: "The used sessions at the single-session price; the rest back"
        }
    }

    /// What is refunded of a package of `sessions` at `price` with `used` of them used, under this rule.
    func refund(price: Int64, sessions: Int, used: Int, singlePrice: Int64?) throws -> Int64 {
        let unused = Int64(max(0, sessions - used))
        guard sessions > 0, unused > 0 else { return 0 }
        switch self {
        case .proRata:
            return MoneyMath.divide(try MoneyMath.multiply(price, unused), by: Int64(sessions))
        case .singlePrice:
            let charged = try MoneyMath.multiply(singlePrice ?? 0, Int64(used))
            return max(0, min(price, price - charged))
        }
    }
}

/// Where a package stands on a day.
struct PackageStanding: Sendable {
    let package: PatientPackage
    let used: Int
    var left: Int { package.status == "active" ? max(0, package.sessions - used - package.refundedSessions) : 0 }
    func expired(on day: CalendarDate) -> Bool { CalendarDate(iso: package.expiresOn).map { $0 < day } ?? true }
    /// The value of the sessions left (what the clinic still owes, its liability): the price per session × left.
    var liability: Int64 { MoneyMath.divide(package.price * Int64(left), by: Int64(max(1, package.sessions))) }
}

/// Selling, redeeming and refunding packages for one clinic.
struct Packages {
    let clinicID: UUID
    let now: Date
    private let base: any Database

    init(db: any Database, clinicID: UUID, now: Date) {
        self.base = db
        self.clinicID = clinicID
        self.now = now
    }

    var db: any Database { Writes.current?.db ?? base }

    func standings(patientID: UUID) async throws -> [PackageStanding] {
        let packages = try await PatientPackage.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == patientID)
            .sort(\.$soldAt).all()
        return try await standings(packages)
    }

    func standings(_ packages: [PatientPackage]) async throws -> [PackageStanding] {
        guard !packages.isEmpty else { return [] }
        let redemptions = try await PackageRedemption.query(on: db).filter(\.$package.$id ~~ packages.compactMap(\.id)).all()
        let used = Dictionary(grouping: redemptions, by: { $0.$package.id }).mapValues(\.count)
        return packages.map { PackageStanding(package: $0, used: used[$0.id!] ?? 0) }
    }

    /// Sells `offer` to the patient: an invoice for it and the package, one unit of work. `sessions` (from the patient's
    /// plan's series) resizes it, priced pro rata to the offer.
    func sell(_ offer: PackageOffer, to patient: Patient, sessions: Int?, today: CalendarDate, by staffID: UUID) async throws -> PatientPackage {
        guard offer.active, offer.$clinic.id == clinicID else { throw InvalidInput(path: "offer", problem: "is not a package this clinic sells") }
        let count = sessions ?? offer.sessions
        guard (1...PackageOffer.maximumSessions).contains(count) else {
            throw InvalidInput(path: "sessions", problem: "must be from 1 to \(PackageOffer.maximumSessions)")
        }
        let price = count == offer.sessions ? offer.price : MoneyMath.divide(try MoneyMath.multiply(offer.price, Int64(count)), by: Int64(offer.sessions))
        let service = try await Service.require(offer.$service.id, on: db)
        return try await Writes.transaction(db) { db in
            let store = InvoiceStore(db: db, clinicID: clinicID)
            guard let billing = try await store.billing() else {
                throw DomainError.conflict("The clinic has no currency set yet: an admin chooses it under billing first.")
            }
            let rate = TaxRate(basisPoints: service.taxBasisPoints ?? billing.defaultTaxBasisPoints ?? 0) ?? .zero
            let expires = today.adding(days: offer.validityDays)
            let line = InvoiceLine(description: "\(offer.name): \(count) sessions of \(service.name.lowercased()), valid until \(expires)",
                                   quantity: 1, unitPrice: price, taxRate: rate, service: service.code)
            let invoice = try await store.issue([line], patientID: patient.id, billedTo: patient.fullName, by: staffID, at: now)
            let package = PatientPackage()
            package.$clinic.id = clinicID
            package.$patient.id = try patient.requireID()
            package.offerID = try offer.requireID()
            package.name = offer.name
            package.serviceID = try service.requireID()
            package.indication = offer.indication
            package.sessions = count
            package.price = price
            package.currency = billing.currency
            package.expiresOn = expires.description
            package.invoiceID = try invoice.requireID()
            package.status = "active"
            package.refundedSessions = 0
            package.soldAt = now
            package.soldBy = staffID
            try await package.create(on: db)
            return package
        }
    }

    /// A signed chart redeems one session of the patient's earliest-expiring package that covers it — a treatment
    /// package, for an indication the chart's plan treats (or any) — unexpired on the day and with a session left.
    /// In the signing's unit of work; a chart redeems at most once. Returns the package used, if any.
    @discardableResult
    func redeem(chart: TreatmentSession, day: CalendarDate) async throws -> PatientPackage? {
        let chartID = chart.chartID
        // The patient's row first: two charts signed at once take turns, so a package's last session is used once.
        try await Patient.lockRow(chart.$patient.id, on: db)
        guard try await PackageRedemption.query(on: db).filter(\.$chartID == chartID).count() == 0 else { return nil }
        let treatments = try await Service.query(on: db).filter(\.$clinic.$id == clinicID).all().filter(\.isTreatment).compactMap(\.id)
        let active = try await PatientPackage.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$patient.$id == chart.$patient.id)
            .filter(\.$status == "active").filter(\.$expiresOn >= day.description).filter(\.$serviceID ~~ treatments)
            .sort(\.$expiresOn).sort(\.$soldAt).all()
        guard !active.isEmpty else { return nil }
        let plan = try await TreatmentPlanRecord.find(chart.$plan.id, on: db)?.plan
        let charted = Set(chart.zones.map(\.zone))
        let indications = Set(plan?.zones.filter { charted.contains($0.zone) }.map(\.indication) ?? [])
        for standing in try await standings(active) where standing.left > 0 {
            if let wanted = standing.package.indication, !indications.contains(wanted) { continue }
            let redemption = PackageRedemption()
            redemption.$package.id = try standing.package.requireID()
            redemption.chartID = chartID
            redemption.practitionerID = chart.practitionerID
            redemption.redeemedAt = now
            try await redemption.create(on: db)
            return standing.package
        }
        return nil
    }

    /// Gives back the unused sessions of a package by the clinic's rule: a credit note on its invoice, the money back
    /// by cash or the terminal, and the package closed. Nothing to give back is a 409.
    func refund(_ packageID: UUID, method: String, reason: String, by staffID: UUID) async throws -> (PatientPackage, Invoice) {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (3...300).contains(reason.count) else { throw InvalidInput(path: "reason", problem: "say why (3 to 300 characters)") }
        return try await Writes.transaction(db) { db in
            guard let package = try await PatientPackage.query(on: db).filter(\.$id == packageID).filter(\.$clinic.$id == clinicID).first() else {
                throw DomainError.notFound("No such package.")
            }
            guard package.status == "active" else { throw DomainError.conflict("This package was refunded already.") }
            let standing = try await standings([package])[0]
            let rule = PackageRefundRule(rawValue: try await ClinicBilling.find(clinicID, on: db)?.packageRefundRule ?? "") ?? .proRata
            // On what the patient was charged: the invoice's gross (prices with or without tax), the single price as
            // charged too, and never more than is left after earlier credit notes.
            guard let invoice = try await Invoice.find(package.invoiceID, on: db) else { throw DomainError.notFound("The package's invoice is missing.") }
            let line = try invoice.decodedLines.first
            var single = try await Service.find(package.serviceID, on: db)?.priceMinor
            if let price = single, !invoice.pricesIncludeTax, let rate = line?.taxRate {
                single = try MoneyMath.add(price, try MoneyMath.tax(onNet: price, rate))
            }
            let credited = try await Invoice.query(on: db).filter(\.$creditsInvoiceID == invoice.requireID()).all().map(\.gross).reduce(0, +)
            let amount = min(try rule.refund(price: invoice.gross, sessions: package.sessions, used: standing.used, singlePrice: single),
                             invoice.gross - credited)
            guard amount > 0 else { throw DomainError.conflict("Nothing is left to refund on this package (\(rule.words.lowercased())).") }
            try await ConditionalUpdate(PatientPackage.self, id: packageID, on: db).where(\.$status, .equal, "active")
                .set(\.$status, to: "refunded").set(\.$refundedSessions, to: standing.left)
                .run(orThrow: DomainError.conflict("This package changed meanwhile."))
            let note = try await InvoiceStore(db: db, clinicID: clinicID)
                .refund(package.invoiceID, amount: amount, reason: "\(reason) — \(standing.left) unused of \(package.sessions) sessions; \(rule.words.lowercased())",
                        method: method, by: staffID, at: now, allowPackage: true)
            try await ConditionalUpdate(PatientPackage.self, id: packageID, on: db).set(\.$creditNoteID, to: note.id)
                .run(orThrow: DomainError.notFound("gone"))
            return (try await PatientPackage.require(packageID, on: db), note)
        }
    }
}
