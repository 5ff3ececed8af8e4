import Crypto
import Foundation
import Vapor

/// A staff member's authenticator app: RFC 6238 TOTP (Vapor's, HMAC-SHA1, 6 digits, 30 s), one step of drift allowed.
struct AuthenticatorApp: Sendable {
    let secret: [UInt8]

    init(secret: [UInt8]) { self.secret = secret }

    /// From the base32 secret stored for the user; nil if it is not base32.
    init?(base32 text: String) {
        let cleaned = Array(text.uppercased().filter { !$0.isWhitespace && $0 != "=" }.utf8)
        guard let bytes = Base32.relaxed.decode(cleaned), !bytes.isEmpty else { return nil }
        self.secret = bytes
    }

    /// A new 160-bit secret, as RFC 4226 recommends.
    static func generate() -> AuthenticatorApp {
        AuthenticatorApp(secret: (0..<20).map { _ in UInt8.random(in: .min ... .max) })
    }

    var base32: String { String(decoding: Base32.canonical.encode(secret), as: UTF8.self).replacingOccurrences(of: "=", with: "") }

    private var totp: TOTP { TOTP(key: SymmetricKey(data: secret), digest: .sha1, digits: .six, interval: 30) }

    func code(at date: Date) -> String { totp.generate(time: date) }

    /// Whether `code` is right for `date` or one 30-second step either side.
    func verify(_ code: String, at date: Date) -> Bool {
        matchingStep(code, at: date, after: nil) != nil
    }

    /// The time step `code` belongs to (`date`'s or one either side), if it is right and later than `after`.
    func matchingStep(_ code: String, at date: Date, after used: Int?) -> Int? {
        let candidate = code.filter { !$0.isWhitespace }
        guard candidate.count == 6 else { return nil }
        let step = Int(date.timeIntervalSince1970 / 30)
        for drift in -1...1 where step + drift > (used ?? Int.min) {
            let at = Date(timeIntervalSince1970: Double(step + drift) * 30)
            if constantTimeEqual(totp.generate(time: at), candidate) { return step + drift }
        }
        return nil
    }

    /// The otpauth URI an authenticator app reads (pasted, or as a QR code).
    func provisioningURI(account: String, issuer: String) -> String {
        var components = URLComponents()
        components.scheme = "otpauth"
        components.host = "totp"
        components.path = "/\(issuer):\(account)"
        components.queryItems = [URLQueryItem(name: "secret", value: base32), URLQueryItem(name: "issuer", value: issuer)]
        return components.string ?? ""
    }
}

/// Compares two strings without stopping at the first difference.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
}
