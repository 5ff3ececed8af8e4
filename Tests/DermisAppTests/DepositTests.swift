import DermisCore
import Fluent
import Foundation
import NIOConcurrencyHelpers
import Testing
import VaporTesting
@testable import DermisApp

/// A payment provider in memory, with the provider's own rules: checkouts paid only by the payer, refunds keyed so the
/// same key twice is one refund, and never more refunded than paid. (tests/fakepay.py is the same over HTTP.)
final class FakePaymentProvider: PaymentProvider, @unchecked Sendable {
    static let webhookSecret = "whsec_test_0123456789"
    struct State {
        var sessions: [String: CheckoutSession] = [:]
        var refunds: [String: ProviderRefund] = [:]
        var refundedBy: [String: Int64] = [:]
        var refuseRefunds = false
        var created = 0
    }
    let state = NIOLockedValueBox(State())

    func createCheckout(amount: Int64, currency: Currency, description: String, reference: String, successURL: String, cancelURL: String,
                        idempotencyKey: String) async throws -> CheckoutSession {
        state.withLockedValue { state in
            state.created += 1
            let id = "cs_test_\(state.created)"
            let session = CheckoutSession(id: id, url: "https://pay.example/c/\(id)", status: "open", paymentStatus: "unpaid", paymentIntent: nil,
                                          amountTotal: amount, currency: currency.code.lowercased(), clientReferenceID: reference)
            state.sessions[id] = session
            return session
        }
    }

    func checkout(_ id: String) async throws -> CheckoutSession {
        guard let session = state.withLockedValue({ $0.sessions[id] }) else { throw PaymentError(retryable: false, message: "no such checkout") }
        return session
    }

    func refund(paymentIntent: String, amount: Int64, idempotencyKey: String) async throws -> ProviderRefund {
        try state.withLockedValue { state in
            if state.refuseRefunds { throw PaymentError(retryable: true, message: "the provider answered 503: try later") }
            if let earlier = state.refunds[idempotencyKey] { return earlier }
            guard let paid = state.sessions.values.first(where: { $0.paymentIntent == paymentIntent })?.amountTotal,
                  (state.refundedBy[paymentIntent] ?? 0) + amount <= paid else {
                throw PaymentError(retryable: false, message: "the provider answered 400: refund exceeds the charge")
            }
            let refund = ProviderRefund(id: "re_\(state.refunds.count + 1)", status: "succeeded", amount: amount)
            state.refunds[idempotencyKey] = refund
            state.refundedBy[paymentIntent, default: 0] += amount
            return refund
        }
    }

    func verify(payload: Data, signature: String?, now: Date) throws -> PaymentEvent {
        try WebhookSignature.verify(payload: payload, header: signature, secret: Self.webhookSecret, now: now, tolerance: StripeCompatible.tolerance)
    }

    /// The payer pays on the provider's page.
    func pay(_ id: String) {
        state.withLockedValue { state in
            guard let s = state.sessions[id] else { return }
            state.sessions[id] = CheckoutSession(id: s.id, url: nil, status: "complete", paymentStatus: "paid", paymentIntent: "pi_\(s.id)",
                                                 amountTotal: s.amountTotal, currency: s.currency, clientReferenceID: s.clientReferenceID)
        }
    }

    func expire(_ id: String) {
        state.withLockedValue { state in
            guard let s = state.sessions[id] else { return }
            state.sessions[id] = CheckoutSession(id: s.id, url: nil, status: "expired", paymentStatus: "unpaid", paymentIntent: nil,
                                                 amountTotal: s.amountTotal, currency: s.currency, clientReferenceID: s.clientReferenceID)
        }
    }

    var refundCount: Int { state.withLockedValue { $0.refunds.count } }
    var lastCheckoutID: String { state.withLockedValue { "cs_test_\($0.created)" } }
}

extension AppTests {
    @Suite struct Deposits {
        static let start = "2026-11-30T09:00:00Z"

        /// The demo clinic taking a £30 deposit with 48 hours' notice, through the fake provider.
        func takingDeposits(_ app: Application) async throws -> FakePaymentProvider {
            let provider = FakePaymentProvider()
            app.payments = provider
            let clinic = try await Clinic.query(on: app.db).first()!.requireID()
            let billing = try await InvoiceStore(db: app.db, clinicID: clinic).configure(currency: "GBP", pricesIncludeTax: true, at: testNow)
            billing.depositAmount = 3000
            billing.noticeHours = 48
            try await billing.save(on: app.db)
            return provider
        }

        /// Books the consultation at `start` online; returns the confirmation path and the booking.
        func bookOnline(_ app: Application, start: String = Self.start, email: String = "priya@example.test") async throws -> (String, Appointment) {
            let location = try await Location.query(on: app.db).first()!.id!.uuidString
            let fields: [String: String] = ["service": "consultation", "start": start, "name": "Priya Shah", "email": email, "location": location,
                                            "pregnant": "no", "isotretinoin": "never", "skinCancer": "no", "infection": "no", "consentToContact": "on"]
            try await app.testing().test(.POST, "/book", headers: formHeaders, body: form(fields.sorted { $0.key < $1.key })) { res in
                #expect(res.status == .created)
            }
            let message = try #require(try await OutboxMessage.query(on: app.db).filter(\.$recipient == email).sort(\.$createdAt, .descending).first())
            let link = try #require(message.body.split(separator: "\n").first { $0.contains("/book/confirm/") })
            let path = String(link[link.range(of: "/book/confirm/")!.lowerBound...])
            let appointment = try #require(try await Appointment.query(on: app.db).filter(\.$contactEmail == email).sort(\.$createdAt, .descending).first())
            return (path, appointment)
        }

        func post(_ app: Application, _ path: String, headers: HTTPHeaders = formHeaders, _ body: ByteBuffer = ByteBuffer()) async throws -> (HTTPStatus, String, String?) {
            var result: (HTTPStatus, String, String?) = (.ok, "", nil)
            try await app.testing().test(.POST, path, headers: headers, body: body) { res in
                result = (res.status, res.body.string, res.headers.first(name: .location))
            }
            return result
        }

        /// A webhook delivery as the provider sends it, signed at `at` with `secret`.
        func deliver(_ app: Application, type: String, checkout: String, eventID: String, at: Date, secret: String = FakePaymentProvider.webhookSecret,
                     signature: String? = nil) async throws -> (HTTPStatus, String) {
            let payload = Data(#"{"id":"\#(eventID)","object":"event","type":"\#(type)","data":{"object":{"id":"\#(checkout)","object":"checkout.session","payment_status":"paid"}}}"#.utf8)
            var headers: HTTPHeaders = ["Content-Type": "application/json"]
            headers.add(name: "Stripe-Signature", value: signature ?? WebhookSignature.sign(payload, secret: secret, at: at))
            var result: (HTTPStatus, String) = (.ok, "")
            try await app.testing().test(.POST, "/webhooks/payments", headers: headers, body: ByteBuffer(data: payload)) { res in
                result = (res.status, res.body.string)
            }
            return result
        }

        func deposit(_ app: Application, _ appointment: Appointment) async throws -> Deposit {
            try #require(try await Deposit.query(on: app.db).filter(\.$appointmentID == appointment.requireID()).first())
        }

        func releaseDue(_ app: Application, _ provider: FakePaymentProvider, clock: any Clock) async throws -> Int {
            let clinic = try await Clinic.query(on: app.db).first()!.requireID()
            return try await DermisApp.Deposits(db: app.db, clinicID: clinic, provider: provider, now: clock.now()).releaseDue()
        }

        @Test func aDepositIsHeldAtBookingRefundedWhenThePatientAttendsAndEveryStepIsOnTheInvoiceTrail() async throws {
            try await withDermis { app, settings in
                let provider = try await takingDeposits(app)
                let (path, appointment) = try await bookOnline(app)
                var page = ""
                try await app.testing().test(.GET, path) { page = $0.body.string }
                #expect(page.contains("A deposit of GBP 30.00 holds this time") && page.contains("at least 48 hours before"), "the policy before paying")
                #expect(try await post(app, path).0 == .conflict, "the plain confirm button does not skip the deposit")
                let (status, payPage, _) = try await post(app, path + "/deposit")
                #expect(status == .ok && payPage.contains("href=\"https://pay.example/c/cs_test_1\""), "a link to the provider's page")
                // A second press reuses the open checkout rather than making another.
                #expect(try await post(app, path + "/deposit").1.contains("https://pay.example/c/cs_test_1"))
                #expect(try await deposit(app, appointment).status == "awaiting-payment")
                // Before the payer has paid, a genuine "completed" event changes nothing: the provider says unpaid.
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_early", at: testNow).0 == .ok)
                #expect(try await deposit(app, appointment).status == "awaiting-payment")
                provider.pay("cs_test_1")
                let (delivered, answer) = try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_1", at: testNow)
                #expect(delivered == .ok && answer.contains(#""acted":true"#))
                let held = try await deposit(app, appointment)
                #expect(held.status == "held" && held.paymentIntent == "pi_cs_test_1")
                #expect(try await Appointment.find(appointment.id, on: app.db)?.status == "booked", "paying confirms the booking")
                let invoice = try #require(try await Invoice.find(held.invoiceID, on: app.db))
                #expect(invoice.number == 1 && invoice.gross == 3000 && invoice.kind == "invoice" && invoice.billedTo == "Priya Shah")
                let payments = try await InvoicePayment.query(on: app.db).filter(\.$invoiceID == invoice.requireID()).all()
                #expect(payments.map(\.amount) == [3000] && payments.first?.method == "card-online" && payments.first?.reference == "pi_cs_test_1")
                // The same event again, and the same payment returning through the success page: nothing more.
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_1", at: testNow).1.contains(#""acted":false"#))
                try await app.testing().test(.GET, path + "?paid=1") { res in #expect(res.body.string.contains("Your GBP 30.00 deposit is paid")) }
                let invoicesNow = try await Invoice.query(on: app.db).count(), paymentsNow = try await InvoicePayment.query(on: app.db).count()
                #expect(invoicesNow == 1 && paymentsNow == 1)
                // The patient comes: checked in, the deposit is due back and refunded once, with a credit note.
                let desk = try await makeStaff(app, role: .frontDesk)
                let headers = try await signIn(app, desk, clock: settings.clock).merging(formHeaders)
                let booked = try #require(try await Appointment.find(appointment.id, on: app.db))
                #expect(try await post(app, "/appointments/\(booked.id!)/status", headers: headers,
                                       form([("status", "checked-in"), ("version", "\(booked.version)")])).0 == .seeOther)
                #expect(try await deposit(app, appointment).status == "release-due")
                provider.state.withLockedValue { $0.refuseRefunds = true }
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 0)
                let waiting = try await deposit(app, appointment)
                #expect(waiting.status == "release-due" && (waiting.lastError ?? "").contains("503"), "a provider refusal waits and is retried")
                provider.state.withLockedValue { $0.refuseRefunds = false }
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 1)
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 0)
                let released = try await deposit(app, appointment)
                #expect(released.status == "released" && released.lastError == nil && provider.refundCount == 1)
                let note = try #require(try await Invoice.find(released.creditNoteID, on: app.db))
                #expect(note.kind == "credit-note" && note.number == 2 && note.gross == 3000 && note.creditsInvoiceID == invoice.id)
                #expect((note.reason ?? "").contains("attended"))
                // The deposit's invoice is never refunded again at the desk: that would give the money back twice.
                let twice = try await post(app, "/invoices/\(invoice.id!)/refund", headers: headers,
                                           form([("amount", "30.00"), ("method", "cash"), ("reason", "Refund at the desk")]))
                #expect(twice.0 == .conflict && twice.1.contains("deposit"))
                let refund = try #require(try await InvoicePayment.find(released.refundID, on: app.db))
                #expect(refund.kind == "refund" && refund.amount == 3000 && refund.reference == "re_1" && refund.invoiceID == note.id)
            }
        }

        @Test func aNoShowKeepsTheDepositAndALateCancellationDoesToo() async throws {
            try await withDermis { app, settings in
                let provider = try await takingDeposits(app)
                let desk = try await makeStaff(app, role: .frontDesk)
                var headers = try await signIn(app, desk, clock: settings.clock).merging(formHeaders)
                func heldBooking(_ start: String, _ email: String) async throws -> Appointment {
                    let (path, appointment) = try await bookOnline(app, start: start, email: email)
                    _ = try await post(app, path + "/deposit")
                    provider.pay(provider.lastCheckoutID)
                    #expect(try await deliver(app, type: "checkout.session.completed", checkout: provider.lastCheckoutID, eventID: "evt_\(email)", at: settings.clock.now()).0 == .ok)
                    return try #require(try await Appointment.find(appointment.id, on: app.db))
                }
                func setStatus(_ a: Appointment, _ status: String) async throws -> HTTPStatus {
                    try await post(app, "/appointments/\(a.id!)/status", headers: headers, form([("status", status), ("version", "\(a.version)")])).0
                }
                // Starts Monday 09:00 UTC: 71 hours from now.
                let noShow = try await heldBooking("2026-11-30T09:00:00Z", "noshow@example.test")
                #expect(try await setStatus(noShow, "no-show") == .seeOther)
                let kept = try await deposit(app, noShow)
                #expect(kept.status == "kept" && (kept.outcome ?? "").contains("did not come"))
                // At Saturday 11:00, the 11:00 Monday booking is exactly 48 hours away: in time, refunded. The 10:00
                // one is 47 hours away: kept.
                let inTime = try await heldBooking("2026-11-30T11:00:00Z", "intime@example.test")
                let late = try await heldBooking("2026-11-30T10:00:00Z", "late@example.test")
                settings.manualClock.advance(by: 25 * 3600)
                headers = try await signIn(app, desk, clock: settings.clock).merging(formHeaders)   // a new day, a new session
                #expect(try await setStatus(inTime, "cancelled") == .seeOther)
                #expect(try await setStatus(late, "cancelled") == .seeOther)
                #expect(try await deposit(app, inTime).status == "release-due")
                let lateDeposit = try await deposit(app, late)
                #expect(lateDeposit.status == "kept" && (lateDeposit.outcome ?? "").contains("inside the 48-hour notice"))
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 1)
                #expect(try await deposit(app, inTime).status == "released" && provider.refundCount == 1)
                #expect(try await deposit(app, noShow).status == "kept", "a kept deposit is never refunded by the worker")
                // The clinic may still give a kept deposit back, saying why: refunded like a release.
                let admin = try await makeStaff(app, role: .admin)
                let adminHeaders = try await signIn(app, admin, clock: settings.clock).merging(formHeaders)
                #expect(try await post(app, "/deposits/\(kept.id!)/release", headers: adminHeaders, form([("reason", "")])).0 == .unprocessableEntity)
                #expect(try await post(app, "/deposits/\(kept.id!)/release", headers: adminHeaders, form([("reason", "Flat tyre; first time")])).0 == .seeOther)
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 1)
                let given = try await deposit(app, noShow)
                #expect(given.status == "released" && (given.outcome ?? "").contains("Flat tyre"))
                #expect(try await post(app, "/deposits/\(kept.id!)/release", headers: adminHeaders, form([("reason", "Again")])).0 == .conflict)
            }
        }

        @Test func forgedStaleReplayedAndOutOfOrderWebhooksChangeNothing() async throws {
            try await withDermis { app, settings in
                let provider = try await takingDeposits(app)
                let (path, appointment) = try await bookOnline(app)
                _ = try await post(app, path + "/deposit")
                // Forged: signed with another secret, unsigned, a garbled header, a signature over another body.
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_f1", at: testNow, secret: "whsec_guess_000000").0 == .badRequest)
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_f2", at: testNow, signature: "").0 == .badRequest)
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_f3", at: testNow, signature: "t=1,v1=zz").0 == .badRequest)
                let other = WebhookSignature.sign(Data("{}".utf8), secret: FakePaymentProvider.webhookSecret, at: testNow)
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_f4", at: testNow, signature: other).0 == .badRequest)
                provider.pay("cs_test_1")
                // Stale: signed 301 seconds ago is refused; 300 seconds ago is still believed.
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_old", at: testNow.addingTimeInterval(-301)).0 == .badRequest)
                #expect(try await deposit(app, appointment).status == "awaiting-payment", "nothing refused changed anything")
                #expect(try await PaymentEventSeen.query(on: app.db).count() == 0)
                // Out of order: the session's "expired" event arrives (delayed) and then "completed"; the provider
                // says paid both times, so the deposit is held once and never abandoned.
                #expect(try await deliver(app, type: "checkout.session.expired", checkout: "cs_test_1", eventID: "evt_exp", at: testNow.addingTimeInterval(-300)).0 == .ok)
                #expect(try await deposit(app, appointment).status == "held")
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_done", at: testNow).0 == .ok)
                #expect(try await deposit(app, appointment).status == "held")
                #expect(try await Invoice.query(on: app.db).count() == 1)
                // Unknown checkout and other event kinds are acknowledged and ignored.
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_nobody", eventID: "evt_x", at: testNow).1.contains(#""acted":false"#))
                #expect(try await deliver(app, type: "charge.refunded", checkout: "ch_1", eventID: "evt_y", at: testNow).1.contains(#""acted":false"#))
                // Without a provider configured the webhook is not there to be called.
                app.payments = nil
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_z", at: testNow).0 == .serviceUnavailable)
            }
        }

        @Test func aPaymentAfterTheHoldLapsedIsRefundedAndAnUnpaidCheckoutIsAbandoned() async throws {
            try await withDermis { app, settings in
                let provider = try await takingDeposits(app)
                let (path, appointment) = try await bookOnline(app)
                _ = try await post(app, path + "/deposit")
                // The hold is 30 minutes; the payer pays at minute 31.
                settings.manualClock.advance(by: 31 * 60)
                #expect(try await post(app, path + "/deposit").0 == .conflict, "no checkout for a lapsed hold")
                provider.pay("cs_test_1")
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_late", at: settings.clock.now()).0 == .ok)
                let late = try await deposit(app, appointment)
                #expect(late.status == "release-due" && (late.outcome ?? "").contains("no longer held"))
                #expect(try await Appointment.find(appointment.id, on: app.db)?.status != "booked")
                #expect(try await releaseDue(app, provider, clock: settings.clock) == 1 && provider.refundCount == 1)
                var page = ""
                try await app.testing().test(.GET, path) { page = $0.body.string }
                #expect(page.contains("Your deposit is being refunded"))
                // Another booking whose checkout expires unpaid: abandoned, nothing invoiced.
                let (second, other) = try await bookOnline(app, start: "2026-11-30T11:00:00Z", email: "noor@example.test")
                _ = try await post(app, second + "/deposit")
                provider.expire(provider.lastCheckoutID)
                #expect(try await deliver(app, type: "checkout.session.expired", checkout: provider.lastCheckoutID, eventID: "evt_gone", at: settings.clock.now()).0 == .ok)
                #expect(try await deposit(app, other).status == "abandoned")
                #expect(try await Invoice.query(on: app.db).filter(\.$appointmentID == other.id).count() == 0)
            }
        }

        @Test func aBookingOnThePatientsOwnPagesIsHeldForItsDepositToo() async throws {
            try await withDermis { app, settings in
                let provider = try await takingDeposits(app)
                let clinical = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                try await Course(app: app, session: clinical, patientID: zoe.id!).ready()
                let portal = AppTests.Portal()
                let patient = try await portal.signIn(app)
                let page = try await portal.get(app, "/my/book", headers: patient).1
                let start = try #require(page.matches(of: /name="start" value="([^"]+)"/).last?.1, "a time later than now")
                let location = try #require(try await Location.query(on: app.db).first()?.id?.uuidString)
                let (status, _, headers) = try await portal.post(app, "/my/book", [("start", String(start)), ("location", location)], headers: patient)
                #expect(status == .seeOther && headers.first(name: .location)?.hasPrefix("/book/confirm/") == true, "on to the deposit's page")
                let lapsing = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == zoe.id!).first())
                #expect(lapsing.status == "pending" && lapsing.source == RecordSource.patientPortal)
                // Left unpaid, the hold lapses after 30 minutes and stops counting as her next session: she books again.
                settings.manualClock.advance(by: 31 * 60)
                #expect(!(try await portal.get(app, "/my", headers: patient).1.contains("deposit-\(lapsing.id!)")))
                let (lapsedPress, _, lapsedTo) = try await portal.post(app, "/my/appointments/\(lapsing.id!)/deposit", [], headers: patient)
                #expect(lapsedPress == .seeOther && lapsedTo.first(name: .location) == "/my")
                // The same time, even: the lapsed hold neither holds it nor counts towards her series interval.
                let (rebooked, rebookedPage, rebookedTo) = try await portal.post(app, "/my/book", [("start", String(start)), ("location", location)], headers: patient)
                #expect(rebooked == .seeOther && rebookedTo.first(name: .location)?.hasPrefix("/book/confirm/") == true,
                        "\(rebookedPage.components(separatedBy: "<main").last?.prefix(600) ?? "")")
                let path = try #require(rebookedTo.first(name: .location))
                let held = try #require(try await Appointment.query(on: app.db).filter(\.$patient.$id == zoe.id!).filter(\.$status == "pending").first())
                // Her home page takes her back to it (a fresh link; the first one no longer works).
                let home = try await portal.get(app, "/my", headers: patient).1
                #expect(home.contains("deposit-\(held.id!)"))
                let (again, _, moved) = try await portal.post(app, "/my/appointments/\(held.id!)/deposit", [], headers: patient)
                let fresh = try #require(moved.first(name: .location))
                #expect(again == .seeOther && fresh != path)
                #expect(try await portal.get(app, path).0 == .notFound)
                #expect(try await post(app, fresh + "/deposit").1.contains("https://pay.example/c/cs_test_1"))
                // Paid; back from the provider (by the appointment, not a link) before its webhook: confirmed at once.
                provider.pay("cs_test_1")
                let back = try await portal.get(app, "/my/appointments/\(held.id!)/deposit/paid?paid=1", headers: patient)
                #expect(back.0 == .seeOther && back.2.first(name: .location) == "/my?done=booked")
                #expect(try await Appointment.find(held.id, on: app.db)?.status == "booked")
                #expect(try await deposit(app, held).status == "held")
                #expect(try await deliver(app, type: "checkout.session.completed", checkout: "cs_test_1", eventID: "evt_portal", at: settings.clock.now()).1
                        .contains(#""acted":true"#), "the webhook after it changes nothing more")
                #expect(try await Invoice.query(on: app.db).count() == 1)
                let (confirmedPress, _, confirmedTo) = try await portal.post(app, "/my/appointments/\(held.id!)/deposit", [], headers: patient)
                #expect(confirmedPress == .seeOther && confirmedTo.first(name: .location) == "/my", "a confirmed time goes home, not to a deposit page")
            }
        }

        @Test func thePolicySaysWhereTheNoticeEnds() {
            let policy = DepositPolicy(amount: 2500, currency: Currency("EUR")!, noticeHours: 24)
            let start = testNow.addingTimeInterval(24 * 3600)
            let zone = TimeZone(identifier: "Europe/Paris")!
            #expect(policy.settle(.cancelled, startsAt: start, at: testNow, in: zone)?.release == true, "exactly the notice: in time")
            #expect(policy.settle(.cancelled, startsAt: start, at: testNow.addingTimeInterval(1), in: zone)?.release == false, "a second late")
            #expect(policy.settle(.cancelled, startsAt: start, at: start.addingTimeInterval(600), in: zone)?.release == false, "after the start")
            #expect(policy.settle(.completed, startsAt: start, at: start, in: zone)?.release == true)
            #expect(policy.settle(.noShow, startsAt: start, at: start, in: zone)?.release == false)
            #expect(policy.settle(.booked, startsAt: start, at: start, in: zone) == nil)
            #expect(policy.words.contains("EUR 25.00") && policy.words.contains("at least 24 hours"))
        }
    }
}
