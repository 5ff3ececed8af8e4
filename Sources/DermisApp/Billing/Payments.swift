import Crypto
import DermisCore
import Foundation
import NIOCore
import Vapor

/// Where card payments go: a provider's hosted checkout, so card data never reaches Dermis. `DERMIS_PAYMENTS_URL` is
/// the provider's API base (`https://api.stripe.com`, or any API that speaks the same subset), `DERMIS_PAYMENTS_SECRET`
/// its secret API key and `DERMIS_PAYMENTS_WEBHOOK_SECRET` the secret its webhooks are signed with.
struct PaymentSettings: Sendable, Equatable {
    var url: String
    var secret: String
    var webhookSecret: String

    /// The settings, or InvalidInput naming the variable and what is wrong. The API must be https, except on this
    /// machine (a test provider).
    static func parse(url text: String, secret: String?, webhookSecret: String?) throws -> PaymentSettings {
        let field = "DERMIS_PAYMENTS_URL"
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
              url.query == nil else {
            throw InvalidInput(path: field, problem: "must be the provider's API base URL, e.g. https://api.stripe.com")
        }
        let local = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && local) else {
            throw InvalidInput(path: field, problem: "must be https (plain http only to this machine)")
        }
        guard url.user == nil, url.password == nil else {
            throw InvalidInput(path: field, problem: "must not carry credentials: set DERMIS_PAYMENTS_SECRET")
        }
        guard let secret, secret.count >= 8 else {
            throw InvalidInput(path: "DERMIS_PAYMENTS_SECRET", problem: "is required with DERMIS_PAYMENTS_URL: the provider's secret API key")
        }
        guard let webhookSecret, webhookSecret.count >= 8 else {
            throw InvalidInput(path: "DERMIS_PAYMENTS_WEBHOOK_SECRET",
                               problem: "is required with DERMIS_PAYMENTS_URL: the secret the provider signs its webhooks with")
        }
        return PaymentSettings(url: String(text.trimmingSuffix("/")), secret: secret, webhookSecret: webhookSecret)
    }
}

/// A hosted checkout for one amount, as the provider reports it.
struct CheckoutSession: Sendable, Equatable, Decodable {
    let id: String
    /// Where to send the payer (present while the checkout is open).
    let url: String?
    /// `open`, `complete` or `expired`.
    let status: String
    /// `paid`, `unpaid` or `no_payment_required`.
    let paymentStatus: String
    /// The payment it made, once paid: what a refund names.
    let paymentIntent: String?
    let amountTotal: Int64?
    let currency: String?
    let clientReferenceID: String?

    enum CodingKeys: String, CodingKey {
        case id, url, status, currency
        case paymentStatus = "payment_status"
        case paymentIntent = "payment_intent"
        case amountTotal = "amount_total"
        case clientReferenceID = "client_reference_id"
    }

    var isPaid: Bool { paymentStatus == "paid" }
}

/// A refund, as the provider reports it.
struct ProviderRefund: Sendable, Equatable, Decodable {
    let id: String
    /// `pending`, `succeeded`, `failed`, `canceled` or `requires_action`.
    let status: String
    let amount: Int64
}

/// A verified webhook event: its id (what makes a replay harmless), its type and the id of the object it is about.
struct PaymentEvent: Sendable, Equatable {
    let id: String
    let type: String
    let objectID: String?
    let objectKind: String?
}

/// A provider call that failed: the provider's words, and whether trying again can help.
struct PaymentError: Error, Sendable, CustomStringConvertible {
    let retryable: Bool
    let message: String
    var description: String { message }
}

/// What Dermis asks of a card-payment provider. `StripeCompatible` is the adapter built.
protocol PaymentProvider: Sendable {
    /// A hosted checkout for `amount` minor units; the payer returns to `successURL` or `cancelURL`.
    func createCheckout(amount: Int64, currency: Currency, description: String, reference: String, successURL: String, cancelURL: String,
                        idempotencyKey: String) async throws -> CheckoutSession
    /// The checkout's state now, from the provider (never from a webhook's copy of it).
    func checkout(_ id: String) async throws -> CheckoutSession
    /// Refunds `amount` of a payment; the same key twice is one refund.
    func refund(paymentIntent: String, amount: Int64, idempotencyKey: String) async throws -> ProviderRefund
    /// The event a webhook request carries, if its signature is the provider's and fresh; else why not.
    func verify(payload: Data, signature: String?, now: Date) throws -> PaymentEvent
}

/// The subset of Stripe's API Dermis uses: Checkout Sessions (`POST /v1/checkout/sessions`, `GET …/{id}`), Refunds
/// (`POST /v1/refunds`, with an `Idempotency-Key`), bearer-key authentication and form-encoded requests. Webhooks carry
/// `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the webhook secret>`.
struct StripeCompatible: PaymentProvider {
    let settings: PaymentSettings
    let client: any Client

    static let timeout: TimeAmount = .seconds(20)
    /// How old a webhook's signature may be (Stripe's own libraries use five minutes).
    static let tolerance: TimeInterval = 300

    func createCheckout(amount: Int64, currency: Currency, description: String, reference: String, successURL: String, cancelURL: String,
                        idempotencyKey: String) async throws -> CheckoutSession {
        try await call(.POST, "/v1/checkout/sessions", form: [
            "mode": "payment",
            "success_url": successURL,
            "cancel_url": cancelURL,
            "client_reference_id": reference,
            "metadata[dermis_reference]": reference,
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": currency.code.lowercased(),
            "line_items[0][price_data][unit_amount]": "\(amount)",
            "line_items[0][price_data][product_data][name]": description,
        ], idempotencyKey: idempotencyKey)
    }

    func checkout(_ id: String) async throws -> CheckoutSession {
        guard id.range(of: #"^[A-Za-z0-9_]{1,200}$"#, options: .regularExpression) != nil else {
            throw PaymentError(retryable: false, message: "'\(id.prefix(40))' is not a checkout id")
        }
        return try await call(.GET, "/v1/checkout/sessions/\(id)", form: nil, idempotencyKey: nil)
    }

    func refund(paymentIntent: String, amount: Int64, idempotencyKey: String) async throws -> ProviderRefund {
        try await call(.POST, "/v1/refunds", form: ["payment_intent": paymentIntent, "amount": "\(amount)"], idempotencyKey: idempotencyKey)
    }

    private func call<T: Decodable>(_ method: HTTPMethod, _ path: String, form: [String: String]?, idempotencyKey: String?) async throws -> T {
        let response: ClientResponse
        do {
            response = try await client.send(method, to: URI(string: settings.url + path)) { (request: inout ClientRequest) in
                request.headers.bearerAuthorization = BearerAuthorization(token: settings.secret)
                if let idempotencyKey { request.headers.replaceOrAdd(name: "Idempotency-Key", value: idempotencyKey) }
                if let form { try request.content.encode(form, as: .urlEncodedForm) }
                request.timeout = Self.timeout
            }
        } catch {
            throw PaymentError(retryable: true, message: "the payment provider could not be reached: \(String(describing: error).prefix(200))")
        }
        guard (200..<300).contains(response.status.code) else {
            let code = Int(response.status.code)
            throw PaymentError(retryable: code >= 500 || [408, 409, 429].contains(code),
                               message: "the payment provider answered \(code): \(Self.answer(response))")
        }
        do {
            return try response.content.decode(T.self, using: JSONDecoder())
        } catch {
            throw PaymentError(retryable: false, message: "the payment provider's answer could not be read")
        }
    }

    /// The provider's own words (`error.message`), else the start of the body.
    static func answer(_ response: ClientResponse) -> String {
        struct Failure: Decodable { struct Detail: Decodable { let message: String? }; let error: Detail? }
        guard let body = response.body, body.readableBytes > 0 else { return response.status.reasonPhrase }
        if let failure = try? JSONDecoder().decode(Failure.self, from: Data(buffer: body)), let message = failure.error?.message {
            return String(message.prefix(300))
        }
        return String(String(buffer: body).prefix(300))
    }

    func verify(payload: Data, signature: String?, now: Date) throws -> PaymentEvent {
        try WebhookSignature.verify(payload: payload, header: signature, secret: settings.webhookSecret, now: now, tolerance: Self.tolerance)
    }
}

/// Stripe-style webhook signatures: `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each v1 a HMAC-SHA256 of `"<t>.<body>"`.
/// A request is believed only when one v1 matches (compared in constant time) and `t` is within the tolerance of now —
/// so a captured request cannot be sent again later, and a replay inside the window is caught by the event's id.
enum WebhookSignature {
    struct Refused: Error, Sendable, CustomStringConvertible {
        let description: String
    }

    static func sign(_ payload: Data, secret: String, at time: Date) -> String {
        let t = Int(time.timeIntervalSince1970)
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(t).".utf8) + payload, using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(t),v1=" + Data(mac).map { String(format: "%02x", $0) }.joined()
    }

    static func verify(payload: Data, header: String?, secret: String, now: Date, tolerance: TimeInterval) throws -> PaymentEvent {
        guard let header, !header.isEmpty, header.count < 2000 else { throw Refused(description: "the request carries no signature") }
        var time: Int?
        var signatures: [Data] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { time = Int(pair[1]) }
            if pair[0] == "v1", let bytes = hexBytes(pair[1]) { signatures.append(bytes) }
        }
        guard let time, !signatures.isEmpty else { throw Refused(description: "the signature header has no time or no v1 signature") }
        let key = SymmetricKey(data: Data(secret.utf8))
        let signed = Data("\(time).".utf8) + payload
        guard signatures.contains(where: { HMAC<SHA256>.isValidAuthenticationCode($0, authenticating: signed, using: key) }) else {
            throw Refused(description: "the signature does not match")
        }
        guard abs(now.timeIntervalSince1970 - Double(time)) <= tolerance else {
            throw Refused(description: "the signature is from \(Int(abs(now.timeIntervalSince1970 - Double(time)))) seconds away from now (at most \(Int(tolerance)))")
        }
        struct Envelope: Decodable {
            struct Inner: Decodable { struct Object: Decodable { let id: String?; let object: String? }; let object: Object? }
            let id: String
            let type: String
            let data: Inner?
        }
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: payload),
              (1...255).contains(envelope.id.count), (1...100).contains(envelope.type.count) else {
            throw Refused(description: "the body is not an event (id, type, data.object)")
        }
        return PaymentEvent(id: envelope.id, type: envelope.type, objectID: envelope.data?.object?.id, objectKind: envelope.data?.object?.object)
    }

    private static func hexBytes(_ text: String) -> Data? {
        guard text.count == 64 else { return nil }
        var bytes = Data(capacity: 32)
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

extension Application {
    private struct PaymentsKey: StorageKey { typealias Value = any PaymentProvider }

    /// The configured card-payment provider; nil when `DERMIS_PAYMENTS_URL` is unset (no deposits are taken online).
    var payments: (any PaymentProvider)? {
        get { storage[PaymentsKey.self] }
        set { storage[PaymentsKey.self] = newValue }
    }

    static func configurePayments(_ app: Application, settings: DermisSettings) throws {
        guard let url = settings.paymentsURL else { return }
        app.payments = StripeCompatible(settings: try PaymentSettings.parse(url: url, secret: settings.paymentsSecret,
                                                                             webhookSecret: settings.paymentsWebhookSecret),
                                        client: app.client)
    }
}
