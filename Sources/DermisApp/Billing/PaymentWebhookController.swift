import DermisCore
import Fluent
import Foundation
import Vapor

/// The payment provider's webhook, `POST /webhooks/payments`. Only a request whose signature is the provider's and
/// fresh (five minutes) is believed — a forged or stale one is a 400 and changes nothing. The event names a checkout;
/// Dermis then asks the provider for that checkout's state now and acts on that, never on the event's own copy, so
/// events arriving out of order (an `expired` after a `completed`) or a genuine event replayed cannot undo a payment.
/// Each event id is acted on once: a replay is answered 200 and changes nothing.
struct PaymentWebhookController: RouteCollection {
    static let path = "/webhooks/payments"

    func boot(routes: any RoutesBuilder) throws {
        // The provider posts from its servers, with no Origin: its signature authorises it.
        routes.on(.POST, "webhooks", "payments", body: .collect(maxSize: "256kb"), use: receive).access(.open).allowingCrossSite()
    }

    struct Answer: Content {
        let received: Bool
        /// Whether this delivery changed anything (false for a replay or an event Dermis does not act on).
        let acted: Bool
    }

    func receive(req: Request) async throws -> Answer {
        guard let provider = req.application.payments else {
            throw Abort(.serviceUnavailable, reason: "No payment provider is configured here (DERMIS_PAYMENTS_URL).")
        }
        let now = req.dermis.clock.now()
        let payload = req.body.data.map { Data(buffer: $0) } ?? Data()
        let event: PaymentEvent
        do {
            event = try provider.verify(payload: payload, signature: req.headers.first(name: "Stripe-Signature"), now: now)
        } catch let refused as WebhookSignature.Refused {
            req.logger.notice("A payment webhook was refused: \(refused.description)")
            throw Abort(.badRequest, reason: "Refused: \(refused.description).")
        }
        guard event.type.hasPrefix("checkout.session."), event.objectKind == nil || event.objectKind == "checkout.session",
              let checkoutID = event.objectID,
              let deposit = try await Deposit.query(on: req.db).filter(\.$checkoutID == checkoutID).first() else {
            return Answer(received: true, acted: false)
        }
        // The checkout's state from the provider itself. Unreachable: 503, and the provider delivers the event again.
        let session: CheckoutSession
        do {
            session = try await provider.checkout(checkoutID)
        } catch let error as PaymentError {
            req.logger.warning("A payment webhook could not be checked with the provider: \(error.message)")
            throw Abort(.serviceUnavailable, reason: "The provider could not be asked about this checkout; deliver it again later.")
        }
        req.auditClinicID = deposit.$clinic.id
        let acted = try await req.audited(.update, objectType: "Deposit", objectID: deposit.id?.uuidString) {
            guard try await PaymentEventSeen.claim(event, at: now, on: req.db) else { return false }
            try await Deposits(db: req.db, clinicID: deposit.$clinic.id, provider: provider, now: now).paid(session, req: req)
            return true
        }
        return Answer(received: true, acted: acted)
    }
}
