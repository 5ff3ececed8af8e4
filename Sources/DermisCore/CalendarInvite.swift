import Foundation

/// An appointment as an iCalendar file (RFC 5545): one VEVENT with its times in the location's zone, and that zone
/// described in a VTIMEZONE (its daylight-saving changes around the event), so any calendar shows the right hour.
public struct CalendarInvite: Sendable {
    public var uid: String
    public var start: Date
    public var end: Date
    public var summary: String
    public var location: String
    public var description: String
    public var timeZone: TimeZone
    /// When the file was made (DTSTAMP).
    public var stamp: Date
    public var cancelled: Bool

    public init(uid: String, start: Date, end: Date, summary: String, location: String, description: String,
                timeZone: TimeZone, stamp: Date, cancelled: Bool = false) {
        self.uid = uid
        self.start = start
        self.end = end
        self.summary = summary
        self.location = location
        self.description = description
        self.timeZone = timeZone
        self.stamp = stamp
        self.cancelled = cancelled
    }

    /// The file's text: CRLF line ends, lines folded at 75 octets.
    public var ics: String { Self.calendar([self]) }

    /// One file holding several events (a series of sessions), in the first one's zone, which they share.
    public static func calendar(_ invites: [CalendarInvite]) -> String {
        guard let first = invites.first else { return "" }
        var lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Dermis//Dermis clinic system//EN", "CALSCALE:GREGORIAN",
                     "METHOD:\(invites.allSatisfy(\.cancelled) ? "CANCEL" : "PUBLISH")"]
        lines += first.timeZoneLines(through: invites.map(\.start).max() ?? first.start)
        for invite in invites { lines += invite.eventLines }
        lines.append("END:VCALENDAR")
        return lines.map(Self.fold).joined(separator: "\r\n") + "\r\n"
    }

    var eventLines: [String] {
        [
            "BEGIN:VEVENT",
            "UID:\(Self.escape(uid))",
            "DTSTAMP:\(Self.utc(stamp))",
            "DTSTART;TZID=\(timeZone.identifier):\(local(start))",
            "DTEND;TZID=\(timeZone.identifier):\(local(end))",
            "SUMMARY:\(Self.escape(summary))",
            "LOCATION:\(Self.escape(location))",
            "DESCRIPTION:\(Self.escape(description))",
            "STATUS:\(cancelled ? "CANCELLED" : "CONFIRMED")",
            "END:VEVENT",
        ]
    }

    /// STANDARD and DAYLIGHT parts for each offset change from a year before the event to a year after; a zone with
    /// none gets one STANDARD part.
    func timeZoneLines(through last: Date) -> [String] {
        var lines = ["BEGIN:VTIMEZONE", "TZID:\(timeZone.identifier)"]
        var cursor = start.addingTimeInterval(-366 * 86_400)
        let until = max(start, last).addingTimeInterval(366 * 86_400)
        var changes: [(Date, Int, Int)] = []
        while let next = timeZone.nextDaylightSavingTimeTransition(after: cursor), next < until {
            changes.append((next, timeZone.secondsFromGMT(for: next.addingTimeInterval(-1)), timeZone.secondsFromGMT(for: next)))
            cursor = next
        }
        if changes.isEmpty {
            let offset = Self.offset(timeZone.secondsFromGMT(for: start))
            lines += ["BEGIN:STANDARD", "DTSTART:19700101T000000", "TZOFFSETFROM:\(offset)", "TZOFFSETTO:\(offset)", "END:STANDARD"]
        }
        for (at, from, to) in changes {
            let kind = timeZone.isDaylightSavingTime(for: at) ? "DAYLIGHT" : "STANDARD"
            // The onset is written in the local time in force before the change.
            lines += ["BEGIN:\(kind)", "DTSTART:\(Self.format(at.addingTimeInterval(Double(from)), zone: TimeZone(identifier: "UTC")!))",
                      "TZOFFSETFROM:\(Self.offset(from))", "TZOFFSETTO:\(Self.offset(to))",
                      "TZNAME:\(timeZone.abbreviation(for: at) ?? timeZone.identifier)", "END:\(kind)"]
        }
        lines.append("END:VTIMEZONE")
        return lines
    }

    func local(_ date: Date) -> String { Self.format(date, zone: timeZone) }

    static func utc(_ date: Date) -> String { format(date, zone: TimeZone(identifier: "UTC")!) + "Z" }

    static func format(_ date: Date, zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    static func offset(_ seconds: Int) -> String {
        let sign = seconds < 0 ? "-" : "+"
        let minutes = abs(seconds) / 60
        return String(format: "%@%02d%02d", sign, minutes / 60, minutes % 60)
    }

    /// TEXT escaping (RFC 5545 3.3.11): backslash, semicolon, comma and newlines.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ";", with: "\\;")
            .replacingOccurrences(of: ",", with: "\\,").replacingOccurrences(of: "\r\n", with: "\\n")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\n")
    }

    /// Lines longer than 75 octets continue on the next line after a space, never splitting a UTF-8 character.
    static func fold(_ line: String) -> String {
        var out: [String] = []
        var current = ""
        var octets = 0
        for character in line {
            let size = String(character).utf8.count
            let limit = out.isEmpty ? 75 : 74
            if octets + size > limit {
                out.append(current)
                current = ""
                octets = 0
            }
            current.append(character)
            octets += size
        }
        out.append(current)
        return out.joined(separator: "\r\n ")
    }
}
