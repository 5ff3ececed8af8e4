import Foundation

/// The short pre-screen of the public booking page: the few questions that stop an obviously ineligible booking early,
/// answered by the patient, run through the same contraindication rules as a full intake. Only the rules these
/// questions can trigger are reported; the full intake and screening follow at the visit.
public struct PreScreen: Codable, Sendable, Hashable {
    public enum Isotretinoin: Codable, Sendable, Hashable {
        case never
        case current
        case stopped(lastDose: CalendarDate)
    }

    public var pregnant: Bool
    public var isotretinoin: Isotretinoin
    public var skinCancerInArea: Bool
    public var infectionInArea: Bool
    public var fillerOn: CalendarDate?
    public var toxinOn: CalendarDate?

    public init(pregnant: Bool = false, isotretinoin: Isotretinoin = .never, skinCancerInArea: Bool = false, infectionInArea: Bool = false,
                fillerOn: CalendarDate? = nil, toxinOn: CalendarDate? = nil) {
        self.pregnant = pregnant
        self.isotretinoin = isotretinoin
        self.skinCancerInArea = skinCancerInArea
        self.infectionInArea = infectionInArea
        self.fillerOn = fillerOn
        self.toxinOn = toxinOn
    }

    /// The rules the questions can trigger.
    public static let rules: Set<String> = ["pregnancy", "isotretinoin-current", "isotretinoin-recent", "active-skin-cancer-in-area",
                                            "infection-in-area", "dermal-filler-recent", "botulinum-toxin-recent-in-area"]

    /// The answers screened for `zones` (the face when none are chosen yet) on `day`.
    public func screen(zones: [String], on day: CalendarDate, protocol p: ClinicalProtocol) throws -> ScreeningResult {
        let areas = zones.isEmpty ? p.zones.filter { $0.region == "face" }.map(\.id) : zones
        var medications: [Intake.Medication] = []
        switch isotretinoin {
        case .never: break
        case .current: medications.append(.init(code: "isotretinoin", current: true))
        case .stopped(let lastDose): medications.append(.init(code: "isotretinoin", lastDose: lastDose, current: false))
        }
        var procedures: [Intake.RecentProcedure] = []
        if let fillerOn { procedures.append(.init(kind: "dermal-filler", date: fillerOn)) }
        if let toxinOn { procedures.append(.init(kind: "botulinum-toxin", date: toxinOn, zones: areas)) }
        // Date of birth and skin type are not asked here and trigger none of the pre-screen's rules.
        let intake = Intake(dateOfBirth: day.adding(months: -12 * 30), fitzpatrickType: 3, pregnant: pregnant, treatmentZones: areas,
                            conditions: (skinCancerInArea ? [Intake.Condition(code: "active-skin-cancer", zones: areas)] : [])
                                + (infectionInArea ? [Intake.Condition(code: "active-infection", zones: areas)] : []),
                            medications: medications, recentProcedures: procedures)
        var result = try Screening.screen(intake, on: day, protocol: p)
        result.reasons = result.reasons.filter { Self.rules.contains($0.rule) }
        result.precautions = []
        if result.reasons.contains(where: { $0.kind == "not-eligible" }) {
            result.outcome = .notEligible
            result.until = nil
        } else if result.reasons.isEmpty {
            result.outcome = .eligible
            result.until = nil
        } else {
            result.outcome = .deferred
            result.until = result.reasons.contains { $0.until == nil } ? nil : result.reasons.compactMap(\.until).max()
        }
        return result
    }
}
