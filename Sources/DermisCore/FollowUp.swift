import Foundation

/// What a patient reports from their aftercare link.
public struct CheckInReport: Codable, Sendable, Hashable {
    /// On the protocol's redness scale (0–3).
    public var redness: Int
    /// On the protocol's pain scale (0–10).
    public var pain: Int
    public var swelling: Bool
    public var itching: Bool
    /// Ids of the protocol's infection signs the patient ticked.
    public var infectionSigns: [String]
    public var notes: String

    public init(redness: Int, pain: Int, swelling: Bool = false, itching: Bool = false, infectionSigns: [String] = [], notes: String = "") {
        self.redness = redness
        self.pain = pain
        self.swelling = swelling
        self.itching = itching
        self.infectionSigns = infectionSigns
        self.notes = notes
    }

    /// Every problem with the report, by field.
    public func issues(protocol p: ClinicalProtocol) -> [FieldIssue] {
        var issues: [FieldIssue] = []
        for (field, scaleID, value) in [("redness", p.followUp.rednessScale, redness), ("pain", p.followUp.painScale, pain)] {
            if let scale = p.outcomeScale(scaleID), !(scale.min...scale.max).contains(value) {
                issues.append(FieldIssue(path: field, problem: "must be \(scale.min) to \(scale.max)"))
            }
        }
        let known = p.followUp.infectionSigns.map(\.id)
        for (i, sign) in infectionSigns.enumerated() where !known.contains(sign) {
            issues.append(FieldIssue(path: "infectionSigns[\(i)]", problem: "unknown sign '\(sign)'; valid: \(known.joined(separator: ", "))"))
        }
        if notes.count > 2_000 { issues.append(FieldIssue(path: "notes", problem: "must be at most 2000 characters")) }
        return issues
    }
}

/// A check-in rule that fired: what the practitioner sees, with its reason and source.
public struct CheckInFlag: Codable, Sendable, Hashable {
    public var rule: String
    public var eventType: String
    public var severity: String
    public var message: String
    public var source: String
    public var conservativeDefault: Bool?
}

public enum AdverseSeverity {
    /// FHIR R4 adverse-event-severity.
    public static let allValues = ["mild", "moderate", "severe"]
}

public enum AdverseOutcome {
    /// FHIR R4 adverse-event-outcome.
    public static let allValues = ["ongoing", "recovering", "resolved", "resolvedWithSequelae", "fatal", "unknown"]
}

public enum OutcomeRater {
    public static let allValues = ["practitioner", "patient"]
}

public enum CheckInRules {
    public static let kinds = ["redness-beyond-downtime", "infection-sign", "pain-rising"]

    /// The rules that fire for a report made at `reportedAt`, given the session's aftercare and the patient's
    /// earlier check-ins for that session (`previous`: pain and time, any order).
    public static func flags(for report: CheckInReport, at reportedAt: Date, schedule: AftercareSchedule,
                             previous: [(pain: Int, at: Date)], zone: TimeZone, protocol p: ClinicalProtocol) -> [CheckInFlag] {
        let day = schedule.day(of: reportedAt, in: zone)
        let earlier = previous.filter { $0.at < reportedAt }.max { $0.at < $1.at }
        return p.followUp.flags.compactMap { rule in
            var values = ["day": String(day)]
            switch rule.kind {
            case "redness-beyond-downtime":
                guard let minimum = rule.minimumGrade, report.redness >= minimum, reportedAt >= schedule.rednessExpectedUntil else { return nil }
                values["grade"] = String(report.redness)
                values["maxDays"] = String(schedule.downtime.max)
                values["depth"] = formatMillimetres(schedule.deepestDepthMm)
            case "infection-sign":
                let labels = p.followUp.infectionSigns.filter { report.infectionSigns.contains($0.id) }.map(\.label)
                guard !labels.isEmpty else { return nil }
                values["signs"] = labels.joined(separator: ", ").lowercased()
            case "pain-rising":
                guard let afterDay = rule.afterDay, day > afterDay, let earlier, report.pain > earlier.pain else { return nil }
                values["pain"] = String(report.pain)
                values["previous"] = String(earlier.pain)
            default:
                return nil
            }
            let message = values.reduce(rule.message) { $0.replacingOccurrences(of: "{\($1.key)}", with: $1.value) }
            return CheckInFlag(rule: rule.id, eventType: rule.eventType, severity: rule.severity, message: message,
                               source: rule.source, conservativeDefault: rule.conservativeDefault)
        }
    }
}

/// One scale plotted across a series: points placed on a fixed grid, ready for a server-rendered SVG.
public struct OutcomeChart: Sendable, Hashable {
    public struct Point: Sendable, Hashable {
        public var session: Int
        public var value: Int
        public var rater: String
        public var x: Double
        public var y: Double
    }

    public struct Tick: Sendable, Hashable {
        public var value: Int
        public var label: String
        public var y: Double
    }

    public static let width = 480.0
    public static let height = 200.0
    public static let left = 40.0
    public static let right = 20.0
    public static let top = 16.0
    public static let bottom = 28.0

    public var points: [Point]
    public var ticks: [Tick]
    /// X positions of the sessions, first to last.
    public var sessionX: [Double]

    /// `scores`: (session index from 0, value, rater). `sessions`: how many sessions the series has so far.
    public init(scale: ClinicalProtocol.OutcomeScale, sessions: Int, scores: [(session: Int, value: Int, rater: String)]) {
        let plotWidth = Self.width - Self.left - Self.right
        let plotHeight = Self.height - Self.top - Self.bottom
        let columns = max(sessions, 1)
        sessionX = (0..<columns).map { Self.left + plotWidth * (Double($0) + 0.5) / Double(columns) }
        let span = Double(scale.max - scale.min)
        func y(_ value: Int) -> Double { Self.top + plotHeight * (1 - Double(value - scale.min) / span) }
        let xs = sessionX
        points = scores.filter { $0.session >= 0 && $0.session < columns }.map {
            Point(session: $0.session, value: $0.value, rater: $0.rater, x: xs[$0.session], y: y($0.value))
        }
        let step = scale.max - scale.min > 5 ? 2 : 1
        ticks = stride(from: scale.min, through: scale.max, by: step).map { Tick(value: $0, label: String($0), y: y($0)) }
    }

    /// An SVG polyline `points` attribute for one rater's scores, in session order.
    public func polyline(for rater: String) -> String {
        points.filter { $0.rater == rater }.sorted { $0.session < $1.session }
            .map { String(format: "%.1f,%.1f", $0.x, $0.y) }.joined(separator: " ")
    }
}
