import DermisCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An IP network from its text: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`, `::1`).
struct IPNetwork: Sendable, Equatable {
    let bytes: [UInt8]
    let prefix: Int

    init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let bytes = Self.address(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        let prefix = parts.count == 2 ? Int(parts[1]) : bits
        guard let prefix, (0...bits).contains(prefix) else { return nil }
        self.bytes = bytes
        self.prefix = prefix
    }

    func contains(_ address: [UInt8]) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = prefix
        for (a, b) in zip(address, bytes) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if a & mask != b & mask { return false }
            remaining -= 8
        }
        return true
    }

    /// An address's bytes: 4 for IPv4 (an IPv4-mapped IPv6 address counts as its IPv4 address), 16 for IPv6.
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes[12...]) }
        return bytes
    }
}

/// Who the client is (docs/SECURITY.md R19): the socket's address, unless that socket is a configured trusted proxy
/// (`DERMIS_TRUSTED_PROXIES`); only then the right-most `X-Forwarded-For` hop that is not itself a trusted proxy. A
/// header from anyone else changes nothing, so rotating it neither escapes a rate limit nor writes its text into the audit.
struct TrustedProxies: Sendable {
    let networks: [IPNetwork]

    static let variable = "DERMIS_TRUSTED_PROXIES"

    /// A comma-separated list of addresses and CIDR networks; an entry that is neither is refused, naming it.
    init(parsing text: String?) throws {
        let entries = (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        networks = try entries.map { entry in
            guard let network = IPNetwork(entry) else {
                throw InvalidInput(path: Self.variable, problem: "'\(entry)' is not an IP address or CIDR network (such as 10.0.0.0/8)")
            }
            return network
        }
    }

    func isTrusted(_ address: String) -> Bool {
        guard let bytes = IPNetwork.address(address) else { return false }
        return networks.contains { $0.contains(bytes) }
    }

    func client(socket: String?, forwardedFor: [String]) -> String {
        guard let socket else { return "unknown" }
        guard isTrusted(socket) else { return socket }
        var client = socket
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            // A hop that is not an address ends the walk: the proxy that passed it on is the last one we can vouch for.
            guard IPNetwork.address(hop) != nil else { break }
            client = hop
            if !isTrusted(hop) { break }
        }
        return client
    }
}
