import Foundation

/// One e-mail as RFC 5322 / MIME text: a plain-text part and, when given, an HTML alternative, and an optional calendar
/// invitation attached. Headers that are not ASCII are RFC 2047 encoded words; bodies are base64 in 76-column lines, so
/// no line is too long and no line of the body can end the SMTP DATA phase.
struct MailMessage: Sendable, Equatable {
    var from: String
    var to: String
    var subject: String
    var text: String
    var html: String?
    /// An iCalendar invitation (`text/calendar; method=REQUEST`), attached as `invite.ics`.
    var calendar: String?
    /// Stable for a message however often it is retried, so a repeat after a crash is recognisably the same mail.
    var messageID: String
    var date: Date
    /// `List-Unsubscribe` (RFC 2369): where the recipient stops such messages.
    var unsubscribe: String?

    /// The whole message with CRLF line ends.
    func rendered(boundarySeed: String) -> String {
        var lines: [String] = [
            "From: \(Self.mailbox(from))",
            "To: \(Self.mailbox(to))",
            "Subject: \(Self.header(subject))",
            "Date: \(Self.rfc5322Date(date))",
            "Message-ID: \(messageID)",
            "MIME-Version: 1.0",
        ]
        if let unsubscribe {
            lines.append("List-Unsubscribe: <\(unsubscribe)>")
            if unsubscribe.hasPrefix("https://") || unsubscribe.hasPrefix("http://") { lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click") }
        }
        let alternative = "alt-\(boundarySeed)"
        func alternativePart() -> [String] {
            var part = ["Content-Type: multipart/alternative; boundary=\"\(alternative)\"", "", "--\(alternative)"]
            part += Self.textPart(text, type: "text/plain; charset=utf-8")
            if let html {
                part.append("--\(alternative)")
                part += Self.textPart(html, type: "text/html; charset=utf-8")
            }
            part.append("--\(alternative)--")
            return part
        }
        if let calendar {
            let mixed = "mix-\(boundarySeed)"
            lines += ["Content-Type: multipart/mixed; boundary=\"\(mixed)\"", "", "--\(mixed)"]
            lines += alternativePart()
            lines.append("--\(mixed)")
            lines += Self.textPart(calendar, type: "text/calendar; charset=utf-8; method=REQUEST",
                                   disposition: "attachment; filename=\"invite.ics\"")
            lines.append("--\(mixed)--")
        } else {
            lines += alternativePart()
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    private static func textPart(_ body: String, type: String, disposition: String? = nil) -> [String] {
        var part = ["Content-Type: \(type)", "Content-Transfer-Encoding: base64"]
        if let disposition { part.append("Content-Disposition: \(disposition)") }
        part.append("")
        let encoded = Data(body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n").utf8)
            .base64EncodedString()
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let end = encoded.index(index, offsetBy: 76, limitedBy: encoded.endIndex) ?? encoded.endIndex
            part.append(String(encoded[index..<end]))
            index = end
        }
        return part
    }

    /// A header value: as it is when printable ASCII, else an RFC 2047 encoded word (UTF-8, base64); line breaks are
    /// dropped so a value can never start a header of its own.
    static func header(_ value: String) -> String {
        let flat = value.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if flat.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) { return flat }
        // Encoded words of at most 75 characters each (RFC 2047 §2), split on whole characters.
        var words: [String] = []
        var chunk = ""
        for character in flat {
            if Data((chunk + String(character)).utf8).count > 45 {
                words.append(chunk)
                chunk = ""
            }
            chunk.append(character)
        }
        if !chunk.isEmpty { words.append(chunk) }
        return words.map { "=?UTF-8?B?\(Data($0.utf8).base64EncodedString())?=" }.joined(separator: "\r\n ")
    }

    /// A mailbox header value: `Name <address>` with only the name encoded when it is not ASCII (an encoded word may
    /// not hold the address), or the bare address.
    static func mailbox(_ value: String) -> String {
        let bare = Self.address(value)
        guard let open = value.lastIndex(of: "<") else { return bare }
        let name = value[..<open].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !name.isEmpty else { return bare }
        let shown = header(name)
        let quoted = shown.hasPrefix("=?") ? shown : "\"" + shown.replacingOccurrences(of: "\\", with: "").replacingOccurrences(of: "\"", with: "") + "\""
        return "\(quoted) <\(bare)>"
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }

    /// The bare address in `Name <address>` or `address`.
    static func address(_ mailbox: String) -> String {
        if let open = mailbox.lastIndex(of: "<"), let close = mailbox.lastIndex(of: ">"), open < close {
            return String(mailbox[mailbox.index(after: open)..<close]).trimmingCharacters(in: .whitespaces)
        }
        return mailbox.trimmingCharacters(in: .whitespaces)
    }

    /// Whether an address can be given to SMTP as it is: one `@`, no spaces, controls or angle brackets.
    static func isDeliverable(_ address: String) -> Bool {
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && address.count <= 254
            && !address.unicodeScalars.contains { $0.value <= 0x20 || $0.value == 0x7F || "<>()[],;:\\\"".unicodeScalars.contains($0) }
    }
}
