import DermisCore
import NIOSSL
import Vapor

/// HTTPS served by Dermis itself (docs/SECURITY.md R16): the certificate chain and key from PEM files, TLS 1.2 at least.
enum TLS {
    static let minimumVersion: TLSVersion = .tlsv12

    /// The server's TLS configuration, or nil without a certificate. A missing or unreadable file, or a certificate
    /// without its key, is refused at start naming the flag.
    static func configuration(_ settings: DermisSettings) throws -> TLSConfiguration? {
        guard settings.tlsCertificateFile != nil || settings.tlsKeyFile != nil else { return nil }
        guard let certificateFile = settings.tlsCertificateFile else {
            throw InvalidInput(path: "--tls-cert", problem: "is needed with --tls-key (the certificate chain, PEM)")
        }
        guard let keyFile = settings.tlsKeyFile else {
            throw InvalidInput(path: "--tls-key", problem: "is needed with --tls-cert (the private key, PEM)")
        }
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificateFile) } catch {
            throw InvalidInput(path: "--tls-cert", problem: "'\(certificateFile)' is not a readable PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw InvalidInput(path: "--tls-cert", problem: "'\(certificateFile)' holds no certificate") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyFile, format: .pem) } catch {
            throw InvalidInput(path: "--tls-key", problem: "'\(keyFile)' is not a readable PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = minimumVersion
        return configuration
    }
}
