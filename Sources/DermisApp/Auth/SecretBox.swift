import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Secrets kept in the database encrypted (docs/SECURITY.md R20): today the staff's authenticator (TOTP) keys, so a copy
/// of the database alone yields no one's second factor. AES-256-GCM with a key that lives in a file beside the data
/// (`DERMIS_SECRET_KEY_FILE`, default `<data dir>/secret.key`), created with mode 0600 on first start when absent.
/// Every server of a chain must be given the same key file.
struct SecretBox: Sendable {
    static let variable = "DERMIS_SECRET_KEY_FILE"
    /// The stored form's prefix: the scheme's version, so the scheme can change without guessing.
    private static let prefix = "v1:"

    private let key: SymmetricKey

    init(key: SymmetricKey) { self.key = key }

    /// The key in `path`, or a new random one written there (mode 0600) when the file does not exist; `created` says
    /// which, so a start on a database whose secrets were sealed with a lost key can be refused.
    static func load(path: String) throws -> (box: SecretBox, created: Bool) {
        if let text = FileManager.default.contents(atPath: path) {
            guard let raw = Data(base64Encoded: String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                  raw.count == 32 else {
                throw SecretKeyFileError(path: path, problem: "must hold 32 bytes in base64 (as Dermis writes it)")
            }
            return (SecretBox(key: SymmetricKey(data: raw)), false)
        }
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        // Written whole to a temporary file, then linked into place: a server starting beside this one sees either no
        // file or the whole key, and of two writers the second links nothing and reads the first's key.
        let temporary = path + ".new-\(UUID().uuidString)"
        let descriptor = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            throw SecretKeyFileError(path: path, problem: "cannot be created (\(String(cString: strerror(errno))))")
        }
        defer { unlink(temporary) }
        let written = text.utf8CString.withUnsafeBufferPointer { Glibc.write(descriptor, $0.baseAddress, text.utf8.count) }
        let synced = fsync(descriptor) == 0
        Glibc.close(descriptor)
        guard written == text.utf8.count, synced else { throw SecretKeyFileError(path: path, problem: "could not be written") }
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { return try load(path: path) }
            throw SecretKeyFileError(path: path, problem: "cannot be created (\(String(cString: strerror(errno))))")
        }
        return (SecretBox(key: key), true)
    }

    func seal(_ plain: String) throws -> String {
        guard let combined = try AES.GCM.seal(Data(plain.utf8), using: key).combined else { throw SecretBoxError.cannotSeal }
        return Self.prefix + combined.base64EncodedString()
    }

    /// The plain text of a sealed value; a value from before encryption (no prefix) is returned as it is.
    func open(_ stored: String) throws -> String {
        guard stored.hasPrefix(Self.prefix) else { return stored }
        guard let data = Data(base64Encoded: String(stored.dropFirst(Self.prefix.count))) else { throw SecretBoxError.cannotOpen }
        do {
            return String(decoding: try AES.GCM.open(try AES.GCM.SealedBox(combined: data), using: key), as: UTF8.self)
        } catch {
            throw SecretBoxError.cannotOpen
        }
    }

    static func isSealed(_ stored: String) -> Bool { stored.hasPrefix(prefix) }

    /// An HMAC-SHA256 of `text` under a key derived from this one (URL-safe): an unsubscribe link carries it, so only
    /// links this server made are honoured, with nothing stored.
    func mac(_ text: String) -> String {
        let derived = HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("dermis link mac".utf8), outputByteCount: 32)
        return Secrets.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: derived)))
    }
}

enum SecretBoxError: Error, CustomStringConvertible {
    case cannotSeal, cannotOpen

    var description: String {
        switch self {
        case .cannotSeal: "a secret could not be encrypted"
        case .cannotOpen: "a stored secret cannot be decrypted with this key file (is DERMIS_SECRET_KEY_FILE the one it was written with?)"
        }
    }
}

/// The key file cannot be used; named at start, never a half-started server.
public struct SecretKeyFileError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "The secret key file \(path) \(problem)." }
}
