import Foundation

/// What a patient can expect of a session, worked out from the protocol data alone (no clinical figure typed twice):
/// the steps and their minutes for the areas they chose, the numbing, the redness and downtime at the depth planned for
/// them — or the protocol's whole range before a plan exists — the aftercare, and who should wait or not be treated.
/// Every figure carries its source. The patient pages word it; this only computes it.
public struct PatientGuide: Sendable, Equatable {
    public struct Step: Sendable, Equatable {
        /// `check-in`, `numbing`, `preparation`, `needling`, `closing`.
        public var kind: String
        public var minutes: Int
        public var source: String
    }

    public struct Area: Sendable, Equatable {
        public var id: String
        public var name: String
        public var minutes: Int
    }

    public struct Downtime: Sendable, Equatable {
        public var minDays: Int
        public var maxDays: Int
        /// The deepest planned depth, when a plan exists; nil: the protocol's whole range.
        public var plannedDepthMm: Double?
        public var sources: [String]
    }

    public struct Finding: Sendable, Equatable {
        public var rule: String
        /// The finding in the patient's words.
        public var words: String
        /// How long after it to wait, when the protocol says (deferrals): months and days.
        public var waitMonths: Int?
        public var waitDays: Int?
        public var source: String
    }

    public var areas: [Area]
    public var steps: [Step]
    public var totalMinutes: Int
    public var passes: Int
    public var passesSource: String
    public var downtime: Downtime
    public var aftercare: [PlanResult.AftercareItem]
    public var notEligible: [Finding]
    public var deferrals: [Finding]
    public var precautions: [Finding]

    /// The guide for `zones` (the face's zones when none are chosen yet) and, once planned, the plan's depths.
    public init(zones chosen: [String], plannedDepthsMm: [Double], protocol p: ClinicalProtocol) {
        let ids = chosen.filter { p.zone($0) != nil }
        let zones = (ids.isEmpty ? p.zones.filter { $0.region == "face" }.map(\.id) : ids).compactMap { p.zone($0) }
        areas = zones.map { Area(id: $0.id, name: $0.displayName, minutes: Planning.zoneMinutes($0, protocol: p)) }
        let timing = Planning.timing(zoneMinutes: areas.map(\.minutes), protocol: p)
        let t = p.procedure
        steps = [
            Step(kind: "check-in", minutes: t.checkInMinutes, source: t.appointmentSource),
            Step(kind: "numbing", minutes: timing.numbing, source: p.anaesthetic.source),
            Step(kind: "preparation", minutes: t.preparationMinutes, source: t.timingSource),
            Step(kind: "needling", minutes: areas.map(\.minutes).reduce(0, +), source: t.timingSource),
            Step(kind: "closing", minutes: t.closingMinutes, source: t.appointmentSource),
        ]
        totalMinutes = timing.appointment
        passes = t.defaultPasses
        passesSource = t.passesSource
        if let deepest = plannedDepthsMm.max() {
            let band = Planning.downtimeBand(for: deepest, protocol: p)
            downtime = Downtime(minDays: band.minDays, maxDays: band.maxDays, plannedDepthMm: deepest, sources: [band.source])
        } else {
            downtime = Downtime(minDays: p.downtime.map(\.minDays).min() ?? 0, maxDays: p.downtime.map(\.maxDays).max() ?? 0,
                                plannedDepthMm: nil, sources: p.downtime.map(\.source))
        }
        aftercare = Planning.aftercare(downtime: PlanResult.Downtime(min: downtime.minDays, max: downtime.maxDays, depthMm: downtime.plannedDepthMm ?? 0,
                                                                    source: downtime.sources.joined(separator: "; ")),
                                       protocol: p)
        func finding(_ rule: ClinicalProtocol.ContraindicationRule) -> Finding {
            Finding(rule: rule.id, words: rule.forPatients ?? rule.message, waitMonths: rule.deferFor?.months, waitDays: rule.deferFor?.days,
                    source: rule.source)
        }
        let chosenIDs = Set(zones.map(\.id))
        // A rule bound to zones (the neck's skin-type clearance) concerns this patient only when one of them is chosen.
        let rules = p.contraindications.filter { rule in rule.zones.map { !chosenIDs.isDisjoint(with: $0) } ?? true }
        notEligible = rules.filter { $0.kind == .notEligible }.map(finding)
        deferrals = rules.filter { $0.kind == .deferral }.map(finding)
        precautions = rules.filter { $0.kind == .precaution }.map(finding)
    }
}
