import Crypto
import DermisCore
import Fluent
import Foundation
import NIOCore
import Vapor

/// Sends one text message. A provider is an adapter behind this; `TwilioMessages` is the one built (Twilio's Messages
/// API and the many providers that copy it). Failures are `MailError`s: `permanent` when sending again cannot help.
protocol SMSTransport: Sendable {
    func send(to phone: String, body: String) async throws
    /// The provider's inbound webhook: whether a request is genuinely from it (its signature over `url` and the form).
    func isGenuine(url: String, form: [String: String], headers: HTTPHeaders) -> Bool
}

/// Where and how text messages go out: `DERMIS_SMS_URL` (the provider's messages endpoint), `DERMIS_SMS_FROM` (the
/// sending number, E.164, or an alphanumeric sender id), and the provider's credentials (`DERMIS_SMS_USER`,
/// `DERMIS_SMS_PASSWORD`: for Twilio the account SID and auth token). Without a URL no SMS is sent.
struct SMSSettings: Sendable, Equatable {
    var url: String
    var from: String
    var user: String
    var password: String

    /// The settings, or InvalidInput naming the variable and what is wrong. The endpoint must be https, except on this
    /// machine (a test sink).
    static func parse(url text: String, from: String?, user: String?, password: String?) throws -> SMSSettings {
        let field = "DERMIS_SMS_URL"
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw InvalidInput(path: field, problem: "must be the provider's messages URL, e.g. https://api.twilio.com/2010-04-01/Accounts/AC…/Messages.json")
        }
        let local = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && local) else {
            throw InvalidInput(path: field, problem: "must be https (plain http only to this machine)")
        }
        guard url.user == nil, url.password == nil else {
            throw InvalidInput(path: field, problem: "must not carry credentials: set DERMIS_SMS_USER and DERMIS_SMS_PASSWORD")
        }
        guard let from, PhoneNumber.isE164(from) || from.range(of: #"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$"#, options: .regularExpression) != nil else {
            throw InvalidInput(path: "DERMIS_SMS_FROM", problem: "must be the sending number in E.164 (+14155550100) or a sender id of up to 11 letters and digits, at least one a letter")
        }
        guard let user, !user.isEmpty else { throw InvalidInput(path: "DERMIS_SMS_USER", problem: "is required with DERMIS_SMS_URL (Twilio: the account SID)") }
        guard let password, !password.isEmpty else {
            throw InvalidInput(path: "DERMIS_SMS_PASSWORD", problem: "is required with DERMIS_SMS_URL (Twilio: the auth token)")
        }
        return SMSSettings(url: text, from: from, user: user, password: password)
    }
}

enum PhoneNumber {
    /// `+` and 7 to 15 digits, the first not 0 (ITU-T E.164).
    static func isE164(_ text: String) -> Bool { text.range(of: #"^\+[1-9][0-9]{6,14}$"#, options: .regularExpression) != nil }
}

/// Twilio's Messages API: a form POST of `To`, `From` and `Body` with basic authentication; its answer on failure is
/// JSON with `code` and `message`. Its webhooks are signed: `X-Twilio-Signature` is base64 HMAC-SHA1, keyed with the
/// auth token, over the webhook's full URL followed by each form field's name and value, sorted by name.
struct TwilioMessages: SMSTransport {
    let settings: SMSSettings
    let client: any Client

    static let timeout: TimeAmount = .seconds(20)

    func send(to phone: String, body: String) async throws {
        let response: ClientResponse
        do {
            response = try await client.post(URI(string: settings.url)) { (request: inout ClientRequest) in
                request.headers.basicAuthorization = BasicAuthorization(username: settings.user, password: settings.password)
                try request.content.encode(["To": phone, "From": settings.from, "Body": body], as: .urlEncodedForm)
                request.timeout = Self.timeout
            }
        } catch {
            throw MailError(permanent: false, message: "the SMS provider could not be reached: \(String(describing: error).prefix(300))")
        }
        guard !(200..<300).contains(response.status.code) else { return }
        // 4xx is the provider refusing this message (a bad number): sending it again cannot help — except 408 and 429,
        // which ask to try later, and 401, 403 and 404, which are this server's setup (credentials, the URL): fixed,
        // every waiting text should still go. 5xx is the provider's own trouble: retried.
        let code = Int(response.status.code)
        let permanent = (400..<500).contains(code) && ![401, 403, 404, 408, 429].contains(code)
        throw MailError(permanent: permanent, message: "the SMS provider answered \(code): \(Self.answer(response))")
    }

    /// The provider's own words: Twilio's `message` (and `code`), else the start of the body.
    static func answer(_ response: ClientResponse) -> String {
        struct TwilioError: Decodable { let code: Int?; let message: String? }
        guard let body = response.body, body.readableBytes > 0 else { return response.status.reasonPhrase }
        if let error = try? JSONDecoder().decode(TwilioError.self, from: Data(buffer: body)), let message = error.message {
            return error.code.map { "\(message) (code \($0))" } ?? message
        }
        return String(String(buffer: body).prefix(300))
    }

    func isGenuine(url: String, form: [String: String], headers: HTTPHeaders) -> Bool {
        guard let given = headers.first(name: "X-Twilio-Signature"), let signature = Data(base64Encoded: given) else { return false }
        let signed = url + form.keys.sorted().map { $0 + (form[$0] ?? "") }.joined()
        return HMAC<Insecure.SHA1>.isValidAuthenticationCode(signature, authenticating: Data(signed.utf8),
                                                             using: SymmetricKey(data: Data(settings.password.utf8)))
    }
}

/// The provider's inbound webhook, `POST /webhooks/sms`: a patient who replies STOP (or UNSUBSCRIBE, CANCEL, END,
/// QUIT, STOPALL, OPTOUT, REVOKE) gets no more text messages; START (or UNSTOP, YES) undoes their STOP, restoring the
/// consent they had (it records none for a patient who never gave it). Only a request carrying the provider's
/// signature over this server's public URL is believed, and each provider message is acted on once; each patient with
/// that number is changed, audited. The answer is an empty TwiML response: the provider sends its own confirmation.
struct SMSWebhookController: RouteCollection {
    static let path = "/webhooks/sms"
    static let stopWords: Set<String> = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"]
    static let startWords: Set<String> = ["START", "UNSTOP", "YES"]

    func boot(routes: any RoutesBuilder) throws {
        // The provider posts from its servers, with no Origin: its signature authorises it.
        routes.post("webhooks", "sms", use: inbound).access(.open).allowingCrossSite()
    }

    func inbound(req: Request) async throws -> Response {
        guard let transport = req.application.mail.sms, let publicURL = req.dermis.settings.publicURL else {
            throw Abort(.serviceUnavailable, reason: "No SMS provider is configured here (DERMIS_SMS_URL and DERMIS_PUBLIC_URL).")
        }
        let form = (try? req.content.decode([String: String].self, as: .urlEncodedForm)) ?? [:]
        guard transport.isGenuine(url: publicURL + Self.path, form: form, headers: req.headers) else {
            throw Abort(.forbidden, reason: "The request does not carry the provider's signature.")
        }
        guard let from = form["From"], PhoneNumber.isE164(from) else {
            throw Abort(.badRequest, reason: "From: must be the sender's number in E.164")
        }
        // Each inbound message is acted on once: a replayed request (the signature carries no time) changes nothing.
        guard let sid = form["MessageSid"], (1...64).contains(sid.count) else {
            throw Abort(.badRequest, reason: "MessageSid: the provider's id of the message is required")
        }
        let word = (form["Body"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines).uppercased()
        let stop = Self.stopWords.contains(word)
        // One unit of work: the message's id first, then every change it asks for, with their audit rows. A second
        // delivery of the message, at the same moment or later, finds the id taken and changes nothing; a change that
        // fails takes the id back with it, so the provider's retry acts. (A retried START can then never land after a
        // later STOP and turn texts back on.)
        if stop || Self.startWords.contains(word) {
            let now = req.dermis.clock.now()
            try await Writes.transaction(req.db) { _ in
                guard try await InboundSMS.claim(sid, at: now, on: req.db) else { return }
                for patient in try await Patient.query(on: req.db).filter(\.$phoneE164, .equal, Optional(from)).all() {
                    let id = try patient.requireID()
                    req.auditClinicID = patient.$clinic.id
                    try await req.audited(.update, objectType: "MessagePreference", objectID: id.uuidString, patientID: id) {
                        let found = try await MessagePreference.find(id, on: req.db)
                        // START only undoes a STOP: it never records consent nobody gave (a stray "yes" included).
                        guard stop || found?.smsStoppedAt != nil else { return }
                        func set(_ preference: MessagePreference) {
                            preference.smsStoppedAt = stop ? now : nil
                            preference.updatedAt = now
                            preference.updatedBy = nil
                        }
                        if let found {
                            set(found)
                            try await found.save(on: req.db)
                            return
                        }
                        let made = MessagePreference(patient: patient, at: now)
                        set(made)
                        do {
                            try await Writes.savepoint(req.db) { db in try await made.create(on: db) }
                        } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
                            // Two STOPs delivered at the same moment: the other one made the row; this one sets it too.
                            guard let other = try await MessagePreference.find(id, on: req.db) else { throw error }
                            set(other)
                            try await other.save(on: req.db)
                        }
                    }
                }
            }
        }
        let response = Response(status: .ok, body: .init(string: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"))
        response.headers.contentType = .xml
        return response
    }
}

/// The provider's ids of the STOP and START messages acted on, so each is acted on once.
final class InboundSMS: Model, @unchecked Sendable {
    static let schema = "sms_inbound"

    @ID(key: .id) var id: UUID?
    @Field(key: "message_sid") var messageSid: String
    @Field(key: "received_at") var receivedAt: Date

    init() {}

    /// Takes the provider's message `sid` in the open unit of work: false when it is taken already (a replay, the
    /// provider's retry, or a delivery at the same moment, whose commit this waits for on the unique index).
    static func claim(_ sid: String, at now: Date, on db: any Database) async throws -> Bool {
        let seen = InboundSMS()
        seen.messageSid = sid
        seen.receivedAt = now
        do {
            try await Writes.savepoint(db) { db in try await seen.create(on: db) }
            return true
        } catch where (error as? any DatabaseError)?.isConstraintFailure == true {
            return false
        }
    }
}

struct InboundSMSOnce: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(InboundSMS.schema)
            .id()
            .field("message_sid", .string, .required)
            .field("received_at", .datetime, .required)
            .unique(on: "message_sid")
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(InboundSMS.schema).delete()
    }
}
