import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// Where a deposit is in its life. Paid at the provider's checkout it is `held`; the booking's end decides the rest:
/// attended or cancelled in time makes it `release-due` and then `released` (refunded, with a credit note); a no-show
/// or a cancellation inside the notice makes it `kept`. A checkout never paid ends `abandoned`.
enum DepositStatus: String, Sendable, CaseIterable {
    case awaitingPayment = "awaiting-payment"
    case held
    case releaseDue = "release-due"
    case released
    case kept
    case abandoned
}

/// A deposit taken for one online booking, with the policy it was taken under (amount and notice), so a later change
/// of the clinic's policy never changes what the patient agreed to.
final class Deposit: Model, @unchecked Sendable {
    static let schema = "deposit"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "appointment_id") var appointmentID: UUID
    @Field(key: "amount") var amount: Int64
    @Field(key: "currency") var currency: String
    /// The notice, in hours before the start, inside which a cancellation keeps the deposit.
    @Field(key: "notice_hours") var noticeHours: Int
    @Field(key: "status") var status: String
    @OptionalField(key: "checkout_id") var checkoutID: String?
    @OptionalField(key: "payment_intent") var paymentIntent: String?
    @OptionalField(key: "invoice_id") var invoiceID: UUID?
    @OptionalField(key: "credit_note_id") var creditNoteID: UUID?
    @OptionalField(key: "refund_id") var refundID: UUID?
    /// Why it was released or kept, in words (shown on the invoice and to staff).
    @OptionalField(key: "outcome") var outcome: String?
    /// The provider's last refusal of a refund, while it is retried.
    @OptionalField(key: "last_error") var lastError: String?
    @Field(key: "created_at") var createdAt: Date
    @Field(key: "updated_at") var updatedAt: Date

    init() {}

    var depositStatus: DepositStatus? { DepositStatus(rawValue: status) }
}

/// A payment or refund recorded on an invoice: cash or a card terminal (recorded by staff), or a card online (recorded
/// from the provider's checkout, by nobody). Amounts are positive minor units; `kind` says which way the money went.
final class InvoicePayment: Model, @unchecked Sendable {
    static let schema = "invoice_payment"

    @ID(key: .id) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "invoice_id") var invoiceID: UUID
    /// `payment` or `refund`.
    @Field(key: "kind") var kind: String
    /// `cash`, `card-terminal` or `card-online`.
    @Field(key: "method") var method: String
    @Field(key: "amount") var amount: Int64
    /// The terminal's slip number or the provider's payment or refund id.
    @OptionalField(key: "reference") var reference: String?
    @Field(key: "recorded_at") var recordedAt: Date
    @OptionalField(key: "recorded_by") var recordedBy: UUID?

    init() {}

    static let methods = ["cash", "card-terminal"]
    static let online = "card-online"
}

/// A provider webhook event already acted on: its id is unique, so a replay changes nothing.
final class PaymentEventSeen: Model, @unchecked Sendable {
    static let schema = "payment_event"

    @ID(key: .id) var id: UUID?
    @Field(key: "event_id") var eventID: String
    @Field(key: "type") var type: String
    @Field(key: "received_at") var receivedAt: Date

    init() {}

    /// Claims the event inside the caller's unit of work: false when it was acted on before.
    static func claim(_ event: PaymentEvent, at now: Date, on db: any Database) async throws -> Bool {
        let seen = PaymentEventSeen()
        seen.eventID = event.id
        seen.type = event.type
        seen.receivedAt = now
        do {
            try await Writes.savepoint(db) { db in try await seen.create(on: db) }
            return true
        } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
            return false
        }
    }
}

/// Deposits, invoice payments, webhook events; the clinic's deposit policy and default tax rate; a service's price and
/// tax rate; whom an invoice is made out to.
struct BillingPolicies: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(ClinicBilling.schema).field("deposit_amount", .int64).update()
        try await database.schema(ClinicBilling.schema).field("notice_hours", .int).update()
        try await database.schema(ClinicBilling.schema).field("default_tax_basis_points", .int).update()
        try await database.schema(Service.schema).field("price_minor", .int64).update()
        try await database.schema(Service.schema).field("tax_basis_points", .int).update()
        try await database.schema(Invoice.schema).field("billed_to", .string).update()
        try await database.schema(Invoice.schema).field("appointment_id", .uuid).update()
        try await database.schema(Deposit.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("appointment_id", .uuid, .required, .references(Appointment.schema, .id))
            .field("amount", .int64, .required)
            .field("currency", .string, .required)
            .field("notice_hours", .int, .required)
            .field("status", .string, .required)
            .field("checkout_id", .string)
            .field("payment_intent", .string)
            .field("invoice_id", .uuid, .references(Invoice.schema, .id))
            .field("credit_note_id", .uuid, .references(Invoice.schema, .id))
            .field("refund_id", .uuid)
            .field("outcome", .string)
            .field("last_error", .string)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .unique(on: "appointment_id")
            .unique(on: "checkout_id")
            .create()
        try await database.schema(InvoicePayment.schema)
            .id()
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("invoice_id", .uuid, .required, .references(Invoice.schema, .id))
            .field("kind", .string, .required)
            .field("method", .string, .required)
            .field("amount", .int64, .required)
            .field("reference", .string)
            .field("recorded_at", .datetime, .required)
            .field("recorded_by", .uuid)
            .create()
        try await database.schema(PaymentEventSeen.schema)
            .id()
            .field("event_id", .string, .required)
            .field("type", .string, .required)
            .field("received_at", .datetime, .required)
            .unique(on: "event_id")
            .create()
        guard let sql = database as? any SQLDatabase else { return }
        try await sql.raw("CREATE INDEX deposit_status ON \(ident: Deposit.schema) (status)").run()
        try await sql.raw("CREATE INDEX invoice_payment_invoice ON \(ident: InvoicePayment.schema) (invoice_id)").run()
        try await sql.raw("CREATE INDEX invoice_credits ON \(ident: Invoice.schema) (credits_invoice_id)").run()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(PaymentEventSeen.schema).delete()
        try await database.schema(InvoicePayment.schema).delete()
        try await database.schema(Deposit.schema).delete()
        for field in ["appointment_id", "billed_to"] { try await database.schema(Invoice.schema).deleteField(.string(field)).update() }
        for field in ["tax_basis_points", "price_minor"] { try await database.schema(Service.schema).deleteField(.string(field)).update() }
        for field in ["default_tax_basis_points", "notice_hours", "deposit_amount"] {
            try await database.schema(ClinicBilling.schema).deleteField(.string(field)).update()
        }
    }
}

/// A clinic's deposit policy for online bookings, in words the patient reads before paying.
struct DepositPolicy: Sendable, Equatable {
    let amount: Int64
    let currency: Currency
    let noticeHours: Int

    static let maximumNoticeHours = 14 * 24

    var amountText: String { "\(currency.code) \(currency.format(amount))" }

    var words: String {
        "A deposit of \(amountText) holds this time. It is refunded when you attend, or if you cancel at least \(noticeHours) hours before "
            + "the start. It is kept if you do not come, or if you cancel later than that."
    }

    /// What happens to a held deposit when its booking ends as `status` at `now`: released (refunded) or kept, and why.
    /// A cancellation exactly `noticeHours` before the start is in time.
    func settle(_ status: AppointmentStatus, startsAt: Date, at now: Date, in zone: TimeZone) -> (release: Bool, why: String)? {
        let day = LocalTime.words(now, in: zone)
        switch status {
        case .checkedIn, .completed: return (true, "Refunded: attended (\(day)).")
        case .noShow: return (false, "Kept: the patient did not come (recorded \(day)).")
        case .cancelled:
            let hours = startsAt.timeIntervalSince(now) / 3600
            if hours >= Double(noticeHours) {
                return (true, "Refunded: cancelled \(Self.hours(hours)) before the start, within the policy (at least \(noticeHours) hours).")
            }
            return (false, "Kept: cancelled \(Self.hours(max(0, hours))) before the start, inside the \(noticeHours)-hour notice.")
        default: return nil
        }
    }

    private static func hours(_ value: Double) -> String {
        value >= 1 ? "\(Int(value.rounded(.down))) hours" : "\(Int((value * 60).rounded(.down))) minutes"
    }
}

/// The deposit side of online booking. Every step writes to the invoice trail: paying issues an invoice for the deposit
/// with the card payment on it; a release refunds it at the provider and issues a credit note with the refund on it; a
/// kept deposit keeps its paid invoice and says why.
struct Deposits {
    let clinicID: UUID
    let provider: (any PaymentProvider)?
    let now: Date
    private let base: any Database

    init(db: any Database, clinicID: UUID, provider: (any PaymentProvider)?, now: Date) {
        self.base = db
        self.clinicID = clinicID
        self.provider = provider
        self.now = now
    }

    /// The open unit of work's connection when there is one (SQLite has one writer: reading beside it would wait on it).
    var db: any Database { Writes.current?.db ?? base }

    /// Invoices and credit notes Dermis issues by itself (a deposit paid online, a release) name this as the issuer.
    static let issuedByDermis = UUID(uuidString: "00000000-0000-0000-0000-000000000000")!

    /// The clinic's policy when it takes deposits online (an amount set and a provider configured), else nil.
    func policy() async throws -> DepositPolicy? {
        guard provider != nil, let billing = try await ClinicBilling.find(clinicID, on: db), let amount = billing.depositAmount, amount > 0,
              let currency = Currency(billing.currency) else { return nil }
        return DepositPolicy(amount: amount, currency: currency, noticeHours: billing.noticeHours ?? 24)
    }

    /// Whether this booking needs a deposit before it is confirmed: an online booking (the public page, or the
    /// patient's own pages), at a clinic that takes them.
    func required(for appointment: Appointment) async throws -> DepositPolicy? {
        guard ["public", RecordSource.patientPortal].contains(appointment.source) else { return nil }
        if let existing = try await deposit(of: appointment), let currency = Currency(existing.currency) {
            return DepositPolicy(amount: existing.amount, currency: currency, noticeHours: existing.noticeHours)
        }
        return try await policy()
    }

    /// A link the payer may be sent to: https, or plain http only to this machine (a test provider).
    static func isCheckoutLink(_ text: String) -> Bool {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(), !host.isEmpty else {
            return false
        }
        return scheme == "https" || (scheme == "http" && ["localhost", "127.0.0.1", "::1"].contains(host))
    }

    func deposit(of appointment: Appointment) async throws -> Deposit? {
        try await Deposit.query(on: db).filter(\.$appointmentID == appointment.requireID()).first()
    }

    /// The provider's checkout page for this pending booking's deposit (one deposit per booking; an open checkout is
    /// reused). Nil when it is paid already.
    func checkout(for appointment: Appointment, policy: DepositPolicy, returnURL: String, description: String, req: Request) async throws -> String? {
        guard let provider else { throw DomainError.conflict("This clinic takes no payments online.") }
        let appointmentID = try appointment.requireID()
        var deposit = try await self.deposit(of: appointment)
        if deposit == nil {
            let fresh = Deposit()
            fresh.id = UUID()
            fresh.$clinic.id = clinicID
            fresh.appointmentID = appointmentID
            fresh.amount = policy.amount
            fresh.currency = policy.currency.code
            fresh.noticeHours = policy.noticeHours
            fresh.status = DepositStatus.awaitingPayment.rawValue
            fresh.createdAt = now
            fresh.updatedAt = now
            do {
                try await Writes.savepoint(db) { db in try await fresh.create(on: db) }
                deposit = fresh
            } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
                deposit = try await self.deposit(of: appointment)   // A second press at the same moment made it.
            }
        }
        guard let deposit, deposit.depositStatus == .awaitingPayment else { return nil }
        if let id = deposit.checkoutID {
            let session = try await provider.checkout(id)
            if session.isPaid { _ = try await paid(session, req: req); return nil }
            if session.status == "open", let url = session.url, Self.isCheckoutLink(url) { return url }
        }
        let session = try await provider.createCheckout(
            amount: deposit.amount, currency: policy.currency, description: description, reference: try deposit.requireID().uuidString,
            successURL: returnURL + "?paid=1", cancelURL: returnURL, idempotencyKey: "checkout-\(try deposit.requireID())-\(deposit.checkoutID ?? "first")")
        guard session.amountTotal == nil || session.amountTotal == deposit.amount, let url = session.url, Self.isCheckoutLink(url) else {
            throw PaymentError(retryable: false, message: "the provider's checkout does not match the deposit, or its link is not https")
        }
        deposit.checkoutID = session.id
        deposit.updatedAt = now
        try await deposit.save(on: db)
        return url
    }

    /// Acts on a checkout as the provider reports it now: paid, the deposit is held — an invoice for it with the card
    /// payment on it — and the booking is confirmed; if the hold lapsed or was cancelled meanwhile, the deposit is due
    /// back at once. Acting twice changes nothing. Returns the deposit it was about, if any.
    @discardableResult
    func paid(_ session: CheckoutSession, req: Request) async throws -> Deposit? {
        guard let deposit = try await Deposit.query(on: db).filter(\.$checkoutID == session.id).filter(\.$clinic.$id == clinicID).first() else {
            return nil
        }
        guard session.isPaid else {
            // An expired or abandoned checkout: the booking's hold lapses by itself; the deposit was never taken.
            if session.status == "expired" && deposit.depositStatus == .awaitingPayment {
                deposit.status = DepositStatus.abandoned.rawValue
                deposit.outcome = "The checkout expired unpaid."
                deposit.updatedAt = now
                try await deposit.save(on: db)
            }
            return deposit
        }
        guard deposit.depositStatus == .awaitingPayment || deposit.depositStatus == .abandoned else { return deposit }
        guard session.amountTotal == deposit.amount, session.currency?.uppercased() == deposit.currency, let intent = session.paymentIntent else {
            throw PaymentError(retryable: false, message: "the provider reports a payment that does not match the deposit")
        }
        let id = try deposit.requireID()
        return try await Writes.transaction(db) { db in
            try await ConditionalUpdate(Deposit.self, id: id, on: db)
                .where(\.$status, .equal, deposit.status)
                .set(\.$status, to: DepositStatus.held.rawValue).set(\.$paymentIntent, to: intent).set(\.$updatedAt, to: now)
                .run(orThrow: DomainError.conflict("The deposit changed meanwhile."))
            guard let appointment = try await Appointment.find(deposit.appointmentID, on: db) else { throw DomainError.notFound("No such booking.") }
            let service = try await Service.require(appointment.$service.id, on: db)
            let location = try await Location.require(appointment.$location.id, on: db)
            let line = InvoiceLine(description: "Deposit: \(service.name), \(LocalTime.words(appointment.startsAt, in: location.zone))",
                                   quantity: 1, unitPrice: deposit.amount, taxRate: .zero)
            let invoice = try await InvoiceStore(db: db, clinicID: clinicID)
                .issue([line], patientID: appointment.$patient.id, billedTo: appointment.contactName, appointmentID: appointment.id,
                       by: Self.issuedByDermis, at: now)
            let payment = InvoicePayment()
            payment.$clinic.id = clinicID
            payment.invoiceID = try invoice.requireID()
            payment.kind = "payment"
            payment.method = InvoicePayment.online
            payment.amount = deposit.amount
            payment.reference = intent
            payment.recordedAt = now
            try await payment.create(on: db)
            let held = try await Deposit.require(id, on: db)
            held.invoiceID = try invoice.requireID()
            let lapsed = appointment.appointmentStatus == .expired
                || (appointment.appointmentStatus == .pending && (appointment.holdExpiresAt ?? .distantPast) <= now)
            if appointment.appointmentStatus == .pending && !lapsed {
                _ = try await SchedulingService(req: req, clinicID: clinicID)
                    .setStatus(appointment, to: .booked, expectedVersion: appointment.version)
            } else if appointment.appointmentStatus != .booked {
                // Paid after the hold lapsed (or the booking ended): nothing is held for it, so it goes back.
                held.status = DepositStatus.releaseDue.rawValue
                held.outcome = "Refunded: the payment arrived after the booking was no longer held."
            }
            held.updatedAt = now
            try await held.save(on: db)
            return held
        }
    }

    /// The booking ended as `status`: a held deposit is released or kept as its policy says. In the caller's unit of work.
    func statusChanged(_ appointment: Appointment, to status: AppointmentStatus, release reason: String? = nil) async throws {
        guard let deposit = try await deposit(of: appointment) else { return }
        if deposit.depositStatus == .awaitingPayment && [.cancelled, .expired].contains(status) {
            deposit.status = DepositStatus.abandoned.rawValue
            deposit.outcome = "The booking ended before the deposit was paid."
            deposit.updatedAt = now
            try await deposit.save(on: db)
            return
        }
        guard deposit.depositStatus == .held, let currency = Currency(deposit.currency) else { return }
        let location = try await Location.require(appointment.$location.id, on: db)
        let policy = DepositPolicy(amount: deposit.amount, currency: currency, noticeHours: deposit.noticeHours)
        guard let settled = reason.map({ (release: true, why: $0) }) ?? policy.settle(status, startsAt: appointment.startsAt, at: now, in: location.zone) else {
            return
        }
        try await ConditionalUpdate(Deposit.self, id: try deposit.requireID(), on: db)
            .where(\.$status, .equal, DepositStatus.held.rawValue)
            .set(\.$status, to: (settled.release ? DepositStatus.releaseDue : .kept).rawValue)
            .set(\.$outcome, to: settled.why).set(\.$updatedAt, to: now)
            .run(orThrow: DomainError.conflict("The deposit changed meanwhile."))
    }

    /// Staff give a held or kept deposit back (the clinic cancelled, a kind exception): it is refunded like a release.
    func release(_ depositID: UUID, reason: String, by staff: String) async throws {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (3...300).contains(reason.count) else { throw InvalidInput(path: "reason", problem: "say why (3 to 300 characters)") }
        guard let deposit = try await Deposit.query(on: db).filter(\.$id == depositID).filter(\.$clinic.$id == clinicID).first() else {
            throw DomainError.notFound("No such deposit.")
        }
        guard [.held, .kept].contains(deposit.depositStatus) else {
            throw DomainError.conflict("A deposit that is \(deposit.status) cannot be released.")
        }
        try await ConditionalUpdate(Deposit.self, id: depositID, on: db)
            .where(\.$status, .equal, deposit.status)
            .set(\.$status, to: DepositStatus.releaseDue.rawValue)
            .set(\.$outcome, to: "Refunded by \(staff): \(reason)").set(\.$updatedAt, to: now)
            .run(orThrow: DomainError.conflict("The deposit changed meanwhile."))
    }

    /// Refunds each deposit that is due back: the provider's refund first (keyed by the deposit, so a retry after a
    /// crash is the same refund), then the credit note and the refund on it in one unit of work. A provider refusal
    /// stays due and is retried; its words are kept for staff. Returns how many were released.
    func releaseDue(limit: Int = 20) async throws -> Int {
        guard let provider else { return 0 }
        let due = try await Deposit.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$status == DepositStatus.releaseDue.rawValue)
            .sort(\.$updatedAt).limit(limit).all()
        var released = 0
        for deposit in due {
            let id = try deposit.requireID()
            guard let intent = deposit.paymentIntent, let invoiceID = deposit.invoiceID else { continue }
            do {
                try await release(deposit, id: id, intent: intent, invoiceID: invoiceID)
                released += 1
            } catch {
                // Whatever went wrong, it is said on the deposit and it goes to the back of the queue: one deposit that
                // cannot be refunded never holds up the others.
                let words = (error as? PaymentError)?.message ?? String(describing: error)
                try await ConditionalUpdate(Deposit.self, id: id, on: db).set(\.$lastError, to: String(words.prefix(300))).set(\.$updatedAt, to: now)
                    .run(orThrow: DomainError.notFound("gone"))
            }
        }
        return released
    }

    private func release(_ deposit: Deposit, id: UUID, intent: String, invoiceID: UUID) async throws {
        guard let provider else { return }
        // Nothing goes back through the provider that the invoice no longer has to give.
        let credited = try await Invoice.query(on: db).filter(\.$creditsInvoiceID == invoiceID).all().map(\.gross).reduce(0, +)
        guard let invoice = try await Invoice.find(invoiceID, on: db), invoice.gross - credited >= deposit.amount else {
            throw PaymentError(retryable: false, message: "the deposit's invoice was already credited; refund it by hand if the patient is owed it")
        }
        let refund = try await provider.refund(paymentIntent: intent, amount: deposit.amount, idempotencyKey: "deposit-refund-\(id)")
        guard !["failed", "canceled"].contains(refund.status) else {
            throw PaymentError(retryable: false, message: "the provider reports the refund \(refund.status)")
        }
        try await Writes.transaction(db) { db in
            try await ConditionalUpdate(Deposit.self, id: id, on: db)
                .where(\.$status, .equal, DepositStatus.releaseDue.rawValue)
                .set(\.$status, to: DepositStatus.released.rawValue).set(\.$updatedAt, to: now)
                .run(orThrow: DomainError.conflict("The deposit changed meanwhile."))
            let note = try await InvoiceStore(db: db, clinicID: clinicID)
                .credit(invoiceID, amount: deposit.amount, reason: deposit.outcome ?? "Deposit refunded.", by: Self.issuedByDermis, at: now)
            let payment = InvoicePayment()
            payment.id = UUID()
            payment.$clinic.id = clinicID
            payment.invoiceID = try note.requireID()
            payment.kind = "refund"
            payment.method = InvoicePayment.online
            payment.amount = deposit.amount
            payment.reference = refund.id
            payment.recordedAt = now
            try await payment.create(on: db)
            try await ConditionalUpdate(Deposit.self, id: id, on: db)
                .set(\.$creditNoteID, to: try note.requireID()).set(\.$refundID, to: payment.id).set(\.$lastError, to: nil)
                .run(orThrow: DomainError.notFound("gone"))
        }
    }
}

/// Refunds deposits that are due back, while the server runs (with a payment provider configured).
struct DepositWorker: Sendable {
    let app: Application

    func runOnce() async throws -> Int {
        guard let provider = app.payments else { return 0 }
        let clinics = try await Deposit.query(on: app.db).filter(\.$status == DepositStatus.releaseDue.rawValue).all().map { $0.$clinic.id }
        var released = 0
        for clinicID in Set(clinics) {
            released += try await Deposits(db: app.db, clinicID: clinicID, provider: provider, now: app.dermis.clock.now()).releaseDue()
        }
        return released
    }

    func loop(interval: Duration = .seconds(2)) async {
        while !Task.isCancelled {
            do { _ = try await runOnce() } catch {
                app.logger.error("The deposit pass failed: \(String(reflecting: type(of: error)))")
            }
            try? await Task.sleep(for: interval)
        }
    }
}
