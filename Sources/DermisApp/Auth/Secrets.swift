import Crypto
import Foundation

/// Random secrets and their stored form: tokens are shown once and kept only as SHA-256 digests.
public enum Secrets {
    /// 256 random bits, URL-safe.
    public static func token() -> String {
        base64URL(Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }))
    }

    /// A password for a new account, shown once: 20 characters from an unambiguous alphabet (~110 bits).
    @Sendable public static func password() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<20).map { _ in alphabet.randomElement()! })
    }

    /// The digest a token or recovery code is stored as.
    public static func digest(_ secret: String) -> String { digest(Data(secret.utf8)) }

    /// SHA-256 in lower-case hex: stored tokens, signatures, photos and the audit chain.
    public static func digest(_ data: Data) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in SHA256.hash(data: data) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
