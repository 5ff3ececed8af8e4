import DermisCore
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// docs/SECURITY.md R19: the client is the socket, unless a configured proxy vouches for the hop before it.
@Suite struct ClientAddressTests {
    let proxies = try! TrustedProxies(parsing: "10.0.0.0/8, 192.168.1.5, fd00::/8")

    @Test func aHeaderFromAnyoneButATrustedProxyChangesNothing() throws {
        #expect(proxies.client(socket: "203.0.113.9", forwardedFor: ["198.51.100.1"]) == "203.0.113.9")
        let none = try TrustedProxies(parsing: nil)
        #expect(none.client(socket: "127.0.0.1", forwardedFor: ["1.2.3.4"]) == "127.0.0.1")
        #expect(proxies.client(socket: nil, forwardedFor: ["1.2.3.4"]) == "unknown")
    }

    @Test func behindTrustedProxiesTheRightMostUntrustedHopIsTheClient() {
        // The client forged a first hop; the proxies appended what they saw.
        #expect(proxies.client(socket: "10.1.2.3", forwardedFor: ["6.6.6.6, 198.51.100.7, 192.168.1.5"]) == "198.51.100.7")
        #expect(proxies.client(socket: "10.1.2.3", forwardedFor: ["6.6.6.6", "198.51.100.7"]) == "198.51.100.7")
        #expect(proxies.client(socket: "::ffff:10.0.0.1", forwardedFor: ["2001:db8::1"]) == "2001:db8::1")
        #expect(proxies.client(socket: "fd00::1", forwardedFor: ["198.51.100.7"]) == "198.51.100.7")
        // Nothing forwarded: the proxy itself. A hop that is no address stops the walk at the proxy that passed it.
        #expect(proxies.client(socket: "10.1.2.3", forwardedFor: []) == "10.1.2.3")
        #expect(proxies.client(socket: "10.1.2.3", forwardedFor: ["<script>, 198.51.100.7"]) == "198.51.100.7")
        #expect(proxies.client(socket: "10.1.2.3", forwardedFor: ["198.51.100.7, not-an-address"]) == "10.1.2.3")
    }

    @Test func networksMatchOnTheirPrefix() throws {
        let net = try #require(IPNetwork("10.0.0.0/8"))
        #expect(net.contains(try #require(IPNetwork.address("10.255.0.1"))))
        #expect(!net.contains(try #require(IPNetwork.address("11.0.0.1"))))
        let narrow = try #require(IPNetwork("192.168.1.0/25"))
        #expect(narrow.contains(try #require(IPNetwork.address("192.168.1.127"))))
        #expect(!narrow.contains(try #require(IPNetwork.address("192.168.1.128"))))
        #expect(IPNetwork("10.0.0.0/33") == nil && IPNetwork("example.com") == nil && IPNetwork("10.0.0.0/") == nil)
    }

    @Test func aBadProxyListIsRefusedNamingTheVariableAndTheEntry() {
        #expect(throws: InvalidInput.self) { try TrustedProxies(parsing: "10.0.0.0/8, proxy.internal") }
        do {
            _ = try TrustedProxies(parsing: "10.0.0.0/8, proxy.internal")
        } catch let invalid as InvalidInput {
            #expect(invalid.description.contains("DERMIS_TRUSTED_PROXIES") && invalid.description.contains("proxy.internal"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// What a browser or Python's URL parser makes of `next` decides where a signed-in person lands.
    @Test(arguments: ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\\/evil.example", "/\\evil.example",
                      " //evil.example", "//evil.example", "https://evil.example", "\u{0}//evil.example", "javascript:alert(1)",
                      "evil.example", "/\t\\evil.example"])
    func aNextThatABrowserWouldReadAsAnotherSiteGoesHome(next: String) {
        #expect(SignInController.safeNext(next) == "/")
    }

    @Test func aPathOnThisSiteIsKept() {
        #expect(SignInController.safeNext("/patients/42/course?tab=plan") == "/patients/42/course?tab=plan")
        #expect(SignInController.safeNext("/") == "/")
    }
}

extension AppTests {
    @Suite struct ForgedAddresses {
        @Test func rotatingXForwardedForNeitherEscapesTheLinkLimitNorReachesTheAudit() async throws {
            try await withDermis { app, _ in
                var statuses: [HTTPStatus] = []
                for index in 0..<40 {
                    let forged = "198.51.100.\(index + 1)"
                    try await app.testing().test(.GET, "/care/" + String(repeating: "x", count: 43),
                                                 headers: ["X-Forwarded-For": forged]) { statuses.append($0.status) }
                }
                #expect(statuses.contains(.tooManyRequests), "a forged address per request escaped the per-address limit: \(Set(statuses))")
                let sources = Set(try await AuditEvent.query(on: app.db).all().map(\.sourceIP))
                #expect(!sources.contains { $0.hasPrefix("198.51.100.") }, "a forged header reached the audit: \(sources)")
            }
        }
    }
}
