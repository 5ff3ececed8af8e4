import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// A clinic's billing settings and its invoice counter: the currency it bills in (ISO 4217), whether its prices
/// include tax, and the next invoice number. One row per clinic; the counter is what keeps numbers gapless.
final class ClinicBilling: Model, @unchecked Sendable {
    static let schema = "clinic_billing"

    /// The clinic's id.
    @ID(custom: .id, generatedBy: .user) var id: UUID?
    @Field(key: "currency") var currency: String
    @Field(key: "prices_include_tax") var pricesIncludeTax: Bool
    @Field(key: "next_number") var nextNumber: Int
    @Field(key: "updated_at") var updatedAt: Date
    /// The deposit an online booking asks for (minor units; nil or 0: none) and the notice, in hours, inside which a
    /// cancellation keeps it.
    @OptionalField(key: "deposit_amount") var depositAmount: Int64?
    @OptionalField(key: "notice_hours") var noticeHours: Int?
    /// The tax rate of a service that names none.
    @OptionalField(key: "default_tax_basis_points") var defaultTaxBasisPoints: Int?
    /// How unused package sessions are refunded (`PackageRefundRule`; nil: pro rata).
    @OptionalField(key: "package_refund_rule") var packageRefundRule: String?

    init() {}
}

/// An issued invoice or credit note: numbered in the clinic's one gapless sequence, its lines and amounts frozen at
/// issue. Nothing is ever edited after issue; a refund is a credit note that names the invoice it credits.
final class Invoice: Model, @unchecked Sendable {
    static let schema = "invoice"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "number") var number: Int
    /// `invoice` or `credit-note`.
    @Field(key: "kind") var kind: String
    @OptionalField(key: "credits_invoice_id") var creditsInvoiceID: UUID?
    @OptionalField(key: "patient_id") var patientID: UUID?
    @Field(key: "currency") var currency: String
    @Field(key: "prices_include_tax") var pricesIncludeTax: Bool
    /// The lines as issued (JSON of `[InvoiceLine]`) and their worked-out amounts (JSON of `[LineTotals]`).
    @Field(key: "lines") var lines: String
    @Field(key: "line_totals") var lineTotals: String
    @Field(key: "net") var net: Int64
    @Field(key: "tax") var tax: Int64
    @Field(key: "gross") var gross: Int64
    @OptionalField(key: "reason") var reason: String?
    @Field(key: "issued_at") var issuedAt: Date
    @Field(key: "issued_by") var issuedBy: UUID
    /// Whom it is made out to, in words (the patient's name, or the name an online booking gave).
    @OptionalField(key: "billed_to") var billedTo: String?
    /// The booking it is for (a deposit).
    @OptionalField(key: "appointment_id") var appointmentID: UUID?

    init() {}

    static let invoiceKind = "invoice"
    static let creditNoteKind = "credit-note"

    var decodedLines: [InvoiceLine] { get throws { try JSONDecoder().decode([InvoiceLine].self, from: Data(lines.utf8)) } }
    var decodedLineTotals: [LineTotals] { get throws { try JSONDecoder().decode([LineTotals].self, from: Data(lineTotals.utf8)) } }

    struct Migration: AsyncMigration {
        func prepare(on database: any Database) async throws {
            try await database.schema(ClinicBilling.schema)
                .field(.id, .uuid, .identifier(auto: false), .references(Clinic.schema, .id))
                .field("currency", .string, .required)
                .field("prices_include_tax", .bool, .required)
                .field("next_number", .int, .required)
                .field("updated_at", .datetime, .required)
                .create()
            try await database.schema(Invoice.schema)
                .id()
                .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
                .field("number", .int, .required)
                .field("kind", .string, .required)
                .field("credits_invoice_id", .uuid, .references(Invoice.schema, .id))
                .field("patient_id", .uuid, .references(Patient.schema, .id))
                .field("currency", .string, .required)
                .field("prices_include_tax", .bool, .required)
                .field("lines", .string, .required)
                .field("line_totals", .string, .required)
                .field("net", .int64, .required)
                .field("tax", .int64, .required)
                .field("gross", .int64, .required)
                .field("reason", .string)
                .field("issued_at", .datetime, .required)
                .field("issued_by", .uuid, .required)
                .unique(on: "clinic_id", "number")
                .create()
        }

        func revert(on database: any Database) async throws {
            try await database.schema(Invoice.schema).delete()
            try await database.schema(ClinicBilling.schema).delete()
        }
    }
}

/// Issuing invoices and credit notes for one clinic. The number comes from the clinic's counter row, taken in the same
/// unit of work as the invoice: the counter's row lock makes concurrent sales (on any number of PostgreSQL instances)
/// take turns, and a sale that rolls back takes its number back with it — so numbers have no gaps and no duplicates.
struct InvoiceStore {
    let db: any Database
    let clinicID: UUID

    /// The clinic's billing settings; nil until an admin has chosen the currency.
    func billing() async throws -> ClinicBilling? {
        try await ClinicBilling.find(clinicID, on: db)
    }

    /// Sets the clinic's currency and whether its prices include tax (the counter is kept).
    func configure(currency code: String, pricesIncludeTax: Bool, at now: Date) async throws -> ClinicBilling {
        guard let currency = Currency(code) else {
            throw InvalidInput(path: "currency", problem: "'\(code)' is not an ISO 4217 code Dermis bills in (\(Currency.knownCodes.joined(separator: ", ")))")
        }
        return try await Writes.transaction(db) { db in
            if let existing = try await ClinicBilling.find(clinicID, on: db) {
                let issued = try await Invoice.query(on: db).filter(\.$clinic.$id == clinicID).count()
                if issued > 0 && existing.currency != currency.code {
                    throw DomainError.conflict("Invoices were issued in \(existing.currency); the currency cannot change under them.")
                }
                existing.currency = currency.code
                existing.pricesIncludeTax = pricesIncludeTax
                existing.updatedAt = now
                try await existing.save(on: db)
                return existing
            }
            let billing = ClinicBilling()
            billing.id = clinicID
            billing.currency = currency.code
            billing.pricesIncludeTax = pricesIncludeTax
            billing.nextNumber = 1
            billing.updatedAt = now
            try await billing.create(on: db)
            return billing
        }
    }

    /// Takes the next number inside the caller's unit of work (the counter row stays locked until it commits).
    private func takeNumber(on db: any Database) async throws -> Int {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        let column = Column<ClinicBilling>.name(\.$nextNumber)
        guard let row = try await sql.raw("""
            UPDATE \(ident: ClinicBilling.schema) SET \(ident: column) = \(ident: column) + 1 WHERE id = \(bind: clinicID)
            RETURNING \(ident: column) - 1 AS taken
            """).first() else {
            throw DomainError.conflict("The clinic has no currency set yet: an admin chooses it under billing first.")
        }
        return try row.decode(column: "taken", as: Int.self)
    }

    /// Issues an invoice of `lines` to the patient (or to nobody, a walk-in sale), at the clinic's settings.
    func issue(_ lines: [InvoiceLine], patientID: UUID?, billedTo: String? = nil, appointmentID: UUID? = nil, by staffID: UUID,
               at now: Date) async throws -> Invoice {
        guard let billing = try await billing() else {
            throw DomainError.conflict("The clinic has no currency set yet: an admin chooses it under billing first.")
        }
        let totals = try InvoiceTotals(lines, pricesIncludeTax: billing.pricesIncludeTax)
        return try await Writes.transaction(db) { db in
            let invoice = try Self.make(kind: Invoice.invoiceKind, clinicID: clinicID, billing: billing, lines: lines, totals: totals.lines,
                                        patientID: patientID, by: staffID, at: now)
            invoice.billedTo = billedTo
            invoice.appointmentID = appointmentID
            invoice.number = try await takeNumber(on: db)
            try await invoice.create(on: db)
            return invoice
        }
    }

    /// A credit note refunding `amount` (gross minor units) of an invoice, split over its lines pro rata to what is left
    /// of each after earlier credit notes. Never more than is left; the invoice itself is never changed.
    func credit(_ invoiceID: UUID, amount: Int64, reason: String, by staffID: UUID, at now: Date) async throws -> Invoice {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (3...500).contains(reason.count) else { throw InvalidInput(path: "reason", problem: "say why (3 to 500 characters)") }
        return try await Writes.transaction(db) { db in
            // The invoice's row first: two refunds of one invoice at once take turns, so together they never exceed it.
            guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
            if sql.dialect.name != "sqlite" {
                _ = try await sql.raw("SELECT id FROM \(ident: Invoice.schema) WHERE id = \(bind: invoiceID) FOR UPDATE").all()
            }
            guard let invoice = try await Invoice.query(on: db).filter(\.$id == invoiceID).filter(\.$clinic.$id == clinicID)
                .filter(\.$kind == Invoice.invoiceKind).first() else { throw DomainError.notFound("No such invoice.") }
            let earlier = try await Invoice.query(on: db).filter(\.$creditsInvoiceID == invoiceID).all()
            var refunded = try invoice.decodedLineTotals.map { _ in LineTotals(net: 0, tax: 0, gross: 0) }
            for note in earlier {
                for (i, line) in try note.decodedLineTotals.enumerated() where refunded.indices.contains(i) {
                    refunded[i].net += line.net
                    refunded[i].tax += line.tax
                    refunded[i].gross += line.gross
                }
            }
            let totals = try InvoiceTotals(try invoice.decodedLines, pricesIncludeTax: invoice.pricesIncludeTax)
            let parts = try totals.refund(amount, alreadyRefunded: refunded)
            guard let billing = try await ClinicBilling.find(clinicID, on: db) else { throw DomainError.conflict("The clinic has no billing settings.") }
            let note = try Self.make(kind: Invoice.creditNoteKind, clinicID: clinicID, billing: billing, lines: try invoice.decodedLines, totals: parts,
                                     patientID: invoice.patientID, by: staffID, at: now)
            note.currency = invoice.currency
            note.pricesIncludeTax = invoice.pricesIncludeTax
            note.creditsInvoiceID = invoiceID
            note.reason = reason
            note.billedTo = invoice.billedTo
            note.appointmentID = invoice.appointmentID
            note.number = try await takeNumber(on: db)
            try await note.create(on: db)
            return note
        }
    }

    /// Takes the invoice's row for the rest of the unit of work (PostgreSQL; SQLite writes one at a time anyway), so two
    /// payments or refunds of one invoice at once take turns and together never pass what it allows.
    private func lock(_ invoiceID: UUID, on db: any Database) async throws {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        if sql.dialect.name != "sqlite" {
            _ = try await sql.raw("SELECT id FROM \(ident: Invoice.schema) WHERE id = \(bind: invoiceID) FOR UPDATE").all()
        }
    }

    /// Where an invoice stands: paid, credited (credit notes), refunded (money given back on them) and still due.
    struct Standing: Sendable {
        let paid: Int64
        let credited: Int64
        let refunded: Int64
        let notes: [Invoice]
        let payments: [InvoicePayment]
        let refunds: [InvoicePayment]
        func due(of invoice: Invoice) -> Int64 { invoice.gross - credited - paid + refunded }
    }

    func standing(_ invoice: Invoice, on db: (any Database)? = nil) async throws -> Standing {
        let db = db ?? self.db
        let id = try invoice.requireID()
        let notes = try await Invoice.query(on: db).filter(\.$creditsInvoiceID == id).sort(\.$number).all()
        let payments = try await InvoicePayment.query(on: db).filter(\.$invoiceID == id).filter(\.$kind == "payment").sort(\.$recordedAt).all()
        let refunds = notes.isEmpty ? [] : try await InvoicePayment.query(on: db).filter(\.$invoiceID ~~ notes.compactMap(\.id))
            .filter(\.$kind == "refund").sort(\.$recordedAt).all()
        return Standing(paid: payments.map(\.amount).reduce(0, +), credited: notes.map(\.gross).reduce(0, +),
                        refunded: refunds.map(\.amount).reduce(0, +), notes: notes, payments: payments, refunds: refunds)
    }

    /// Staff record money taken for an invoice: cash or a card terminal's slip. Never more than is still due.
    func pay(_ invoiceID: UUID, amount: Int64, method: String, reference: String?, by staffID: UUID, at now: Date) async throws -> InvoicePayment {
        guard InvoicePayment.methods.contains(method) else {
            throw InvalidInput(path: "method", problem: "must be one of \(InvoicePayment.methods.joined(separator: ", "))")
        }
        let reference = reference?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let reference, reference.count > 100 { throw InvalidInput(path: "reference", problem: "at most 100 characters") }
        return try await Writes.transaction(db) { db in
            try await lock(invoiceID, on: db)
            guard let invoice = try await Invoice.query(on: db).filter(\.$id == invoiceID).filter(\.$clinic.$id == clinicID)
                .filter(\.$kind == Invoice.invoiceKind).first() else { throw DomainError.notFound("No such invoice.") }
            let due = try await standing(invoice, on: db).due(of: invoice)
            guard amount > 0 else { throw InvalidInput(path: "amount", problem: "must be more than 0") }
            guard amount <= due else {
                let currency = Currency(invoice.currency)
                throw InvalidInput(path: "amount", problem: "is more than the \(currency.map { "\($0.code) \($0.format(due))" } ?? "\(due)") still due")
            }
            let payment = InvoicePayment()
            payment.$clinic.id = clinicID
            payment.invoiceID = invoiceID
            payment.kind = "payment"
            payment.method = method
            payment.amount = amount
            payment.reference = reference?.isEmpty == false ? reference : nil
            payment.recordedAt = now
            payment.recordedBy = staffID
            try await payment.create(on: db)
            return payment
        }
    }

    /// A refund given at the desk: a credit note for `amount` and the money back on it (cash or the terminal), in one
    /// unit of work. Never more than was paid and not yet given back.
    /// With method `none` it only cancels what is still owed (a credit note with no money back). A deposit's invoice
    /// and an active package's are refused here: they are given back by releasing the deposit (through the provider)
    /// or refunding the package (which closes it), so money never goes back twice. `allowPackage` is the package
    /// refund's own call.
    func refund(_ invoiceID: UUID, amount: Int64, reason: String, method: String, by staffID: UUID, at now: Date,
                allowPackage: Bool = false) async throws -> Invoice {
        if try await Deposit.query(on: db).filter(\.$invoiceID == invoiceID).count() > 0 {
            throw DomainError.conflict("This is a deposit's invoice: give the deposit back from the invoices page (it is refunded through the payment provider).")
        }
        if !allowPackage, try await PatientPackage.query(on: db).filter(\.$invoiceID == invoiceID).filter(\.$status == "active").count() > 0 {
            throw DomainError.conflict("This invoice is for a package: refund its unused sessions from the patient's invoices and packages, which closes it.")
        }
        guard InvoicePayment.methods.contains(method) || method == "none" else {
            throw InvalidInput(path: "method", problem: "must be one of \(InvoicePayment.methods.joined(separator: ", ")) or none")
        }
        return try await Writes.transaction(db) { db in
            try await lock(invoiceID, on: db)
            guard let invoice = try await Invoice.query(on: db).filter(\.$id == invoiceID).filter(\.$clinic.$id == clinicID)
                .filter(\.$kind == Invoice.invoiceKind).first() else { throw DomainError.notFound("No such invoice.") }
            let standing = try await standing(invoice, on: db)
            let currency = Currency(invoice.currency)
            func words(_ minor: Int64) -> String { currency.map { "\($0.code) \($0.format(minor))" } ?? "\(minor)" }
            if method == "none" {
                let due = standing.due(of: invoice)
                guard amount <= due else { throw InvalidInput(path: "amount", problem: "is more than the \(words(due)) still owed; give money back by cash or terminal") }
                return try await credit(invoiceID, amount: amount, reason: reason, by: staffID, at: now)
            }
            let refundable = standing.paid - standing.refunded
            guard amount <= refundable else {
                throw InvalidInput(path: "amount", problem: "is more than the \(words(refundable)) paid and not yet given back")
            }
            let note = try await credit(invoiceID, amount: amount, reason: reason, by: staffID, at: now)
            let payment = InvoicePayment()
            payment.$clinic.id = clinicID
            payment.invoiceID = try note.requireID()
            payment.kind = "refund"
            payment.method = method
            payment.amount = amount
            payment.recordedAt = now
            payment.recordedBy = staffID
            try await payment.create(on: db)
            return note
        }
    }

    private static func make(kind: String, clinicID: UUID, billing: ClinicBilling, lines: [InvoiceLine], totals: [LineTotals], patientID: UUID?,
                             by staffID: UUID, at now: Date) throws -> Invoice {
        let invoice = Invoice()
        invoice.$clinic.id = clinicID
        invoice.kind = kind
        invoice.patientID = patientID
        invoice.currency = billing.currency
        invoice.pricesIncludeTax = billing.pricesIncludeTax
        invoice.lines = String(decoding: try JSONEncoder().encode(lines), as: UTF8.self)
        invoice.lineTotals = String(decoding: try JSONEncoder().encode(totals), as: UTF8.self)
        invoice.net = totals.map(\.net).reduce(0, +)
        invoice.tax = totals.map(\.tax).reduce(0, +)
        invoice.gross = totals.map(\.gross).reduce(0, +)
        invoice.issuedAt = now
        invoice.issuedBy = staffID
        return invoice
    }
}
