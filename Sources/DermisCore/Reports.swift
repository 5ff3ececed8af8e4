import Foundation

/// The contract's JSON: camelCase keys, ISO dates, stable key order for diffs.
public enum ContractJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    public static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }
}

extension ScreeningOutcome {
    /// The outcome in words for a person.
    public var words: String {
        switch self {
        case .eligible: "Eligible"
        case .eligibleWithPrecautions: "Eligible with precautions"
        case .deferred: "Deferred"
        case .notEligible: "Not eligible — refer to a physician"
        }
    }
}

extension ScreeningResult {
    /// A readable report: the outcome first, then each reason and precaution with its source.
    public var report: String {
        var lines: [String] = []
        var headline = "Screening: \(outcome.words)"
        if outcome == .deferred { headline += until.map { " until \($0)" } ?? " (no end date: review when the cause has resolved)" }
        lines.append(headline)
        if let screenedOn { lines.append("Screened on \(screenedOn) against protocol \(protocolVersion)") }
        if !reasons.isEmpty {
            lines.append("")
            lines.append("Reasons:")
            for reason in reasons { lines += reason.reportLines }
        }
        if !precautions.isEmpty {
            lines.append("")
            lines.append("Precautions:")
            for precaution in precautions { lines += precaution.reportLines }
        }
        lines.append("")
        lines.append("Dermis supports the practitioner's decision; the qualified practitioner decides.")
        return lines.joined(separator: "\n")
    }
}

extension RuleFinding {
    var reportLines: [String] {
        var first = "  - [\(rule)] \(message)"
        if let until { first += " (until \(until))" }
        var lines = [first, "      source: \(source)"]
        if conservativeDefault == true { lines.append("      conservative clinic default: no published figure") }
        return lines
    }
}

extension PlanResult {
    /// A readable plan: zones with depths and limits, timing, series, downtime, aftercare.
    public var report: String {
        var lines = ["Treatment plan (protocol \(protocolVersion))", ""]
        for zone in zones {
            var line = "  \(zone.zone) — \(zone.indication): \(formatMillimetres(zone.depthMm)) mm"
            if let limitedBy = zone.limitedBy { line += " (recommended \(formatMillimetres(zone.recommendedDepthMm)) mm, limited by \(limitedBy))" }
            lines.append(line)
            lines.append("      \(zone.passes) passes, \(zone.pattern), ~\(zone.estimatedChannelsPerCm2) channels/cm², \(zone.secondsInZone) s pen time in the zone")
            lines.append("      range \(formatMillimetres(zone.depthRangeMm.min))–\(formatMillimetres(zone.depthRangeMm.max)) mm — \(zone.depthSource)")
            if let reason = zone.limitReason { lines.append("      \(reason)") }
            for note in zone.notes { lines.append("      note [\(note.rule)]: \(note.message)") }
        }
        lines.append("")
        lines.append("Timing: numbing \(numbingMinutes) min, procedure \(procedureMinutes) min, appointment \(appointmentMinutes) min")
        lines.append("Series: \(series.sessions) sessions, at least \(series.minIntervalDays) days apart: "
                     + series.proposedDates.map(\.description).joined(separator: ", "))
        lines.append("Downtime: \(downtimeDays.min)–\(downtimeDays.max) days (deepest zone \(formatMillimetres(downtimeDays.depthMm)) mm)")
        lines.append("")
        lines.append("Aftercare:")
        for item in aftercare {
            lines.append("  \(AftercareWindow(fromHour: item.fromHour, toHour: item.toHour).words): \(item.instruction)")
        }
        lines.append("")
        lines.append("Dermis supports the practitioner's decision; the qualified practitioner decides.")
        return lines.joined(separator: "\n")
    }
}

/// An aftercare window in words: "hours 0–8", "days 1–3", "from day 7".
public struct AftercareWindow: Sendable {
    public var fromHour: Int
    public var toHour: Int?

    public init(fromHour: Int, toHour: Int?) {
        self.fromHour = fromHour
        self.toHour = toHour
    }

    public var words: String {
        guard let toHour else { return "from day \(fromHour / 24 + 1)" }
        if toHour <= 48 { return "hours \(fromHour)–\(toHour)" }
        let firstDay = fromHour / 24 + 1
        let lastDay = (toHour + 23) / 24
        return firstDay == lastDay ? "day \(firstDay)" : "days \(firstDay)–\(lastDay)"
    }
}
