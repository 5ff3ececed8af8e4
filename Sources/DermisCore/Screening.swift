import Foundation

/// The screening outcomes the clinic distinguishes, most restrictive last.
public enum ScreeningOutcome: String, Codable, Sendable, Comparable {
    case eligible
    case eligibleWithPrecautions = "eligible-with-precautions"
    case deferred
    case notEligible = "not-eligible"

    private var rank: Int {
        switch self {
        case .eligible: 0
        case .eligibleWithPrecautions: 1
        case .deferred: 2
        case .notEligible: 3
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// One rule that fired, with its reason and source, as the practitioner sees it.
public struct RuleFinding: Codable, Sendable, Hashable {
    public var rule: String
    public var message: String
    public var source: String
    /// `not-eligible`, `deferral` or `precaution` (an extension of the contract shape).
    public var kind: String?
    /// For a deferral with a known end: the first date this rule no longer defers.
    public var until: CalendarDate?
    public var rationale: String?
    public var conservativeDefault: Bool?
}

/// docs/CONTRACT.md's screening result.
public struct ScreeningResult: Codable, Sendable, Hashable {
    public var outcome: ScreeningOutcome
    public var until: CalendarDate?
    public var reasons: [RuleFinding]
    public var precautions: [RuleFinding]
    public var protocolVersion: String
    /// The date screened on (an extension: the result is only true for that day).
    public var screenedOn: CalendarDate?
}

public enum Screening {
    /// Screens an intake on a date against the protocol's contraindication rules.
    ///
    /// Outcome: not-eligible if any such rule fires; else deferred if any deferral is still running
    /// (`until` = the latest end, absent if any is open-ended); else eligible with precautions if any
    /// precaution applies; else eligible.
    public static func screen(_ intake: Intake, on date: CalendarDate, protocol p: ClinicalProtocol) throws -> ScreeningResult {
        try intake.validate(on: date, zones: p.zones.map(\.id))
        var reasons: [RuleFinding] = []
        var precautions: [RuleFinding] = []
        var deferralEnds: [CalendarDate?] = []
        var notEligible = false

        for rule in p.contraindications {
            guard let firing = fire(rule, intake: intake, on: date) else { continue }
            var finding = RuleFinding(rule: rule.id, message: rule.message, source: rule.source, kind: rule.kind.rawValue,
                                      rationale: rule.rationale, conservativeDefault: rule.conservativeDefault)
            switch rule.kind {
            case .notEligible:
                notEligible = true
                reasons.append(finding)
            case .deferral:
                finding.until = firing.until
                deferralEnds.append(firing.until)
                reasons.append(finding)
            case .precaution:
                precautions.append(finding)
            }
        }

        let outcome: ScreeningOutcome
        var until: CalendarDate?
        if notEligible {
            outcome = .notEligible
            precautions = []
        } else if !deferralEnds.isEmpty {
            outcome = .deferred
            let ends = deferralEnds.compactMap { $0 }
            until = ends.count == deferralEnds.count ? ends.max() : nil
        } else {
            outcome = precautions.isEmpty ? .eligible : .eligibleWithPrecautions
        }
        return ScreeningResult(outcome: outcome, until: until, reasons: reasons, precautions: precautions,
                               protocolVersion: p.version, screenedOn: date)
    }

    /// Whether a rule fires; for a deferral, also when it ends (nil when open-ended).
    private struct Firing { var until: CalendarDate? }

    private static func fire(_ rule: ClinicalProtocol.ContraindicationRule, intake: Intake, on date: CalendarDate) -> Firing? {
        let treated = Set(intake.treatmentZones)
        if let zones = rule.zones, treated.isDisjoint(with: zones) { return nil }

        /// A finding with no zones covers the whole body; otherwise it must touch a treated zone.
        func inArea(_ zones: [String]?) -> Bool {
            guard rule.inTreatmentArea == true, let zones else { return true }
            return !treated.isDisjoint(with: zones)
        }
        /// The end of the deferral counted from `start`, or nil when it has already ended.
        func running(from start: CalendarDate) -> Firing? {
            guard let duration = rule.deferFor else { return Firing(until: nil) }
            let end = duration.after(start)
            return end > date ? Firing(until: end) : nil
        }

        let trigger = rule.trigger
        let codes = Set(trigger.codes ?? [])
        switch trigger.type {
        case .pregnant:
            return intake.pregnant ? Firing(until: nil) : nil
        case .nursing:
            return intake.nursing ? Firing(until: nil) : nil
        case .fitzpatrick:
            return (trigger.outside ?? []).contains(intake.fitzpatrickType) ? nil : Firing(until: nil)
        case .allergy:
            return intake.allergies.contains(where: codes.contains) ? Firing(until: nil) : nil
        case .condition:
            let hit = intake.conditions.contains { codes.contains($0.code) && inArea($0.zones) }
            return hit ? Firing(until: nil) : nil
        case .medication:
            let matching = intake.medications.filter { codes.contains($0.code) }
            switch trigger.status ?? .current {
            case .current:
                return matching.contains(where: \.isCurrent) ? Firing(until: nil) : nil
            case .stopped:
                // Only when no dose is current (a current one is the `current` rule's business).
                guard !matching.isEmpty, !matching.contains(where: \.isCurrent) else { return nil }
                return running(from: matching.compactMap(\.lastDose).max()!)
            }
        case .procedure:
            let latest = intake.recentProcedures
                .filter { codes.contains($0.kind) && inArea($0.zones) }
                .map(\.date).max()
            return latest.flatMap(running(from:))
        }
    }
}
