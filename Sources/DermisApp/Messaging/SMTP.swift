import DermisCore
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Where and how e-mail goes out: `DERMIS_SMTP_URL` (`smtp://user:pass@host:587` with STARTTLS, `smtps://…:465` with
/// TLS from the first byte; `?starttls=required|off`, `?verify=none` for a test server), `DERMIS_MAIL_FROM`, and
/// `DERMIS_SMTP_CA_FILE` to trust a private certificate authority.
struct SMTPSettings: Sendable, Equatable {
    enum Security: String, Sendable { case implicitTLS, startTLS, none }

    var host: String
    var port: Int
    var username: String?
    var password: String?
    var security: Security
    var verifyCertificate: Bool
    var caFile: String?
    var from: String

    /// The settings in a URL, or InvalidInput naming `DERMIS_SMTP_URL` / `DERMIS_MAIL_FROM` and what is wrong.
    static func parse(url text: String, from: String?, caFile: String?) throws -> SMTPSettings {
        let field = "DERMIS_SMTP_URL"
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), ["smtp", "smtps"].contains(scheme) else {
            throw InvalidInput(path: field, problem: "must be smtp://user:pass@host:587 or smtps://user:pass@host:465")
        }
        guard let host = url.host, !host.isEmpty else { throw InvalidInput(path: field, problem: "names no host") }
        let query = Dictionary((url.queryItems ?? []).map { ($0.name.lowercased(), ($0.value ?? "").lowercased()) }, uniquingKeysWith: { $1 })
        var security: Security = scheme == "smtps" ? .implicitTLS : .startTLS
        switch query["starttls"] {
        case nil, "required": break
        case "off": if scheme == "smtp" { security = .none }
        case let other?: throw InvalidInput(path: field, problem: "starttls must be required or off, not '\(other)'")
        }
        let verify: Bool
        switch query["verify"] {
        case nil, "full": verify = true
        case "none": verify = false
        case let other?: throw InvalidInput(path: field, problem: "verify must be full or none, not '\(other)'")
        }
        guard let from, MailMessage.isDeliverable(MailMessage.address(from)) else {
            throw InvalidInput(path: "DERMIS_MAIL_FROM", problem: "must be the sender's address, e.g. 'Harbour Skin <clinic@example.org>'")
        }
        return SMTPSettings(host: host, port: url.port ?? (scheme == "smtps" ? 465 : 587),
                            username: url.percentEncodedUser.flatMap { $0.removingPercentEncoding },
                            password: url.percentEncodedPassword.flatMap { $0.removingPercentEncoding },
                            security: security, verifyCertificate: verify, caFile: caFile, from: from)
    }
}

/// Why a message was not sent. `permanent`: sending it again cannot help (the server refused the recipient); otherwise
/// it is retried later.
struct MailError: Error, CustomStringConvertible, Equatable {
    let permanent: Bool
    let message: String
    var description: String { message }
}

/// Something that delivers one message (SMTP here; SMS providers beside it).
protocol MailTransport: Sendable {
    func send(_ mail: MailMessage) async throws
}

/// An SMTP client on SwiftNIO (RFC 5321), with STARTTLS (RFC 3207) or implicit TLS, and AUTH PLAIN (RFC 4954).
/// One connection per message: simple, and a failure touches only that message.
struct SMTPTransport: MailTransport {
    let settings: SMTPSettings
    let group: any EventLoopGroup
    /// The whole conversation must finish within this.
    var deadline: TimeAmount = .seconds(60)

    func send(_ mail: MailMessage) async throws {
        let recipient = MailMessage.address(mail.to)
        guard MailMessage.isDeliverable(recipient) else {
            throw MailError(permanent: true, message: "'\(recipient)' is not an e-mail address that can be delivered to")
        }
        let session = try await SMTPSession.open(settings, group: group, deadline: deadline)
        do {
            try await session.expect(220, "greeting")
            var hello = try await session.command("EHLO dermis", expect: 250)
            if settings.security == .startTLS {
                guard hello.lines.contains(where: { $0.uppercased().dropFirst(4).hasPrefix("STARTTLS") }) else {
                    throw MailError(permanent: false, message: "\(settings.host) does not offer STARTTLS (set ?starttls=off only for a local test server)")
                }
                _ = try await session.command("STARTTLS", expect: 220)
                try await session.startTLS()
                hello = try await session.command("EHLO dermis", expect: 250)
            }
            if let username = settings.username {
                let token = Data("\u{0}\(username)\u{0}\(settings.password ?? "")".utf8).base64EncodedString()
                let reply = try await session.command("AUTH PLAIN \(token)", redacted: "AUTH PLAIN …")
                guard reply.code == 235 else { throw MailError(permanent: false, message: "\(settings.host) refused the login: \(reply.text)") }
            }
            _ = try await session.command("MAIL FROM:<\(MailMessage.address(settings.from))>", expect: 250)
            let rcpt = try await session.command("RCPT TO:<\(recipient)>")
            guard rcpt.code == 250 || rcpt.code == 251 else {
                throw MailError(permanent: rcpt.code >= 500, message: "\(settings.host) refused the recipient: \(rcpt.text)")
            }
            _ = try await session.command("DATA", expect: 354)
            let body = mail.rendered(boundarySeed: String(mail.messageID.hashValue.magnitude, radix: 36))
            // Dot-stuffing (RFC 5321 §4.5.2); the base64 bodies never start a line with a dot, but headers might.
            let stuffed = body.split(separator: "\r\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix(".") ? "." + $0 : String($0) }.joined(separator: "\r\n")
            let accepted = try await session.send(stuffed + ".\r\n")
            guard accepted.code == 250 else {
                throw MailError(permanent: accepted.code >= 500, message: "\(settings.host) did not accept the message: \(accepted.text)")
            }
            _ = try? await session.command("QUIT")
            await session.close()
        } catch {
            await session.close()
            if let mail = error as? MailError { throw mail }
            throw MailError(permanent: false, message: "\(settings.host):\(settings.port): \(error)")
        }
    }
}

/// One server reply: its code and lines.
struct SMTPReply: Sendable {
    let code: Int
    let lines: [String]
    var text: String { lines.joined(separator: " / ") }
}

/// The conversation with one server: commands out, replies in (multi-line replies joined). Used by one task at a
/// time, one command after another, hence the unchecked Sendable for its reply iterator.
final class SMTPSession: @unchecked Sendable {
    private let channel: any Channel
    private var replies: AsyncThrowingStream<SMTPReply, any Error>.AsyncIterator
    private let settings: SMTPSettings

    private init(channel: any Channel, replies: AsyncThrowingStream<SMTPReply, any Error>, settings: SMTPSettings) {
        self.channel = channel
        self.replies = replies.makeAsyncIterator()
        self.settings = settings
    }

    static func tlsContext(_ settings: SMTPSettings) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if !settings.verifyCertificate { tls.certificateVerification = .none }
        if let caFile = settings.caFile { tls.trustRoots = .file(caFile) }
        return try NIOSSLContext(configuration: tls)
    }

    static func open(_ settings: SMTPSettings, group: any EventLoopGroup, deadline: TimeAmount) async throws -> SMTPSession {
        let (stream, continuation) = AsyncThrowingStream<SMTPReply, any Error>.makeStream()
        let context = settings.security == .implicitTLS ? try tlsContext(settings) : nil
        let host = settings.host
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            let tls = try NIOSSLClientHandler(context: context, serverHostname: SMTPSession.isIPAddress(host) ? nil : host)
                            try channel.pipeline.syncOperations.addHandler(tls)
                        }
                        try channel.pipeline.syncOperations.addHandler(SMTPReplyDecoder(continuation: continuation))
                    }
                }
                .connect(host: settings.host, port: settings.port).get()
        } catch {
            throw MailError(permanent: false, message: "cannot reach \(settings.host):\(settings.port) (\(error))")
        }
        // The whole conversation has a deadline: past it the connection is closed and the reply stream ends.
        channel.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
        return SMTPSession(channel: channel, replies: stream, settings: settings)
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    func expect(_ code: Int, _ what: String) async throws {
        let reply = try await next()
        guard reply.code == code else { throw MailError(permanent: false, message: "unexpected \(what) from \(settings.host): \(reply.text)") }
    }

    @discardableResult
    func command(_ line: String, expect code: Int? = nil, redacted: String? = nil) async throws -> SMTPReply {
        let reply = try await send(line + "\r\n")
        if let code, reply.code != code {
            throw MailError(permanent: reply.code >= 500 && !line.hasPrefix("EHLO"),
                            message: "\(settings.host) answered \(redacted ?? line.components(separatedBy: " ").first ?? line) with \(reply.text)")
        }
        return reply
    }

    func send(_ text: String) async throws -> SMTPReply {
        try await channel.writeAndFlush(ByteBuffer(string: text))
        return try await next()
    }

    func next() async throws -> SMTPReply {
        guard let reply = try await replies.next() else {
            throw MailError(permanent: false, message: "\(settings.host) closed the connection")
        }
        return reply
    }

    /// Upgrades the connection to TLS in place, after the server's 220 to STARTTLS.
    func startTLS() async throws {
        let context = try Self.tlsContext(settings)
        let host = settings.host
        let channel = channel
        try await channel.eventLoop.submit {
            let tls = try NIOSSLClientHandler(context: context, serverHostname: SMTPSession.isIPAddress(host) ? nil : host)
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
        }.get()
    }

    func close() async {
        try? await channel.close()
    }
}

/// Splits what the server sends into replies: lines `250-…` continue a reply, `250 …` ends it.
private final class SMTPReplyDecoder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let continuation: AsyncThrowingStream<SMTPReply, any Error>.Continuation
    private var pending = ""
    private var lines: [String] = []

    init(continuation: AsyncThrowingStream<SMTPReply, any Error>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        pending += buffer.readString(length: buffer.readableBytes) ?? ""
        while let end = pending.range(of: "\r\n") ?? pending.range(of: "\n") {
            let line = String(pending[..<end.lowerBound])
            pending.removeSubrange(..<end.upperBound)
            lines.append(line)
            let characters = Array(line)
            if characters.count >= 3, let code = Int(String(characters[0..<3])), characters.count == 3 || characters[3] == " " {
                continuation.yield(SMTPReply(code: code, lines: lines))
                lines = []
            } else if characters.count < 4 || characters[3] != "-" {
                continuation.finish(throwing: MailError(permanent: false, message: "the server sent something that is not SMTP"))
                context.close(promise: nil)
                return
            }
        }
        if pending.utf8.count > 64 * 1024 {
            continuation.finish(throwing: MailError(permanent: false, message: "the server sent an overlong line"))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        continuation.finish(throwing: MailError(permanent: false, message: "connection error: \(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }
}
