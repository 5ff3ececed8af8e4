import Foundation

/// What was actually done in one zone, as charted.
public struct ChartedZone: Codable, Sendable, Hashable {
    public var zone: String
    public var depthMm: Double
    public var passes: Int
    public var pattern: String
    public var secondsInZone: Int
    public var estimatedChannelsPerCm2: Int?

    public init(zone: String, depthMm: Double, passes: Int, pattern: String, secondsInZone: Int, estimatedChannelsPerCm2: Int? = nil) {
        self.zone = zone
        self.depthMm = depthMm
        self.passes = passes
        self.pattern = pattern
        self.secondsInZone = secondsInZone
        self.estimatedChannelsPerCm2 = estimatedChannelsPerCm2
    }
}

/// The rules a session chart must keep: depth limits, the plan, numbing time.
public enum ChartRules {
    /// Checks each charted zone against the device, the practitioner's licensed maximum and the plan (deeper than
    /// planned by more than the protocol's tolerance is refused); fills in the estimated channel density.
    public static func checked(_ zones: [ChartedZone], plan: PlanResult, device: ClinicalProtocol.DeviceProfile,
                               practitionerMaxDepthMm: Double?, protocol p: ClinicalProtocol) throws -> [ChartedZone] {
        var issues = IssueCollector()
        var result: [ChartedZone] = []
        let tolerance = p.procedure.chartToleranceMm ?? 0
        for (i, zone) in zones.enumerated() {
            let path = "zones[\(i)]"
            guard let planned = plan.zones.first(where: { $0.zone == zone.zone }) else {
                issues.add("\(path).zone", "'\(zone.zone)' is not in the plan; planned: \(plan.zones.map(\.zone).joined(separator: ", "))")
                continue
            }
            let name = p.zone(zone.zone)?.displayName ?? zone.zone
            let depth = zone.depthMm
            let steps = depth / device.depthStepMm
            if !(depth > 0) || !depth.isFinite {
                issues.add("\(path).depthMm", "must be a depth above 0 mm")
            } else if depth > device.maxDepthMm + Planning.epsilon {
                issues.add("\(path).depthMm", "Needle depth \(formatMillimetres(depth)) mm exceeds this device's maximum of \(formatMillimetres(device.maxDepthMm)) mm for zone '\(name)'")
            } else if let limit = practitionerMaxDepthMm, depth > limit + Planning.epsilon {
                issues.add("\(path).depthMm", "Needle depth \(formatMillimetres(depth)) mm exceeds your licensed maximum of \(formatMillimetres(limit)) mm for zone '\(name)'")
            } else if depth > planned.depthMm + tolerance + Planning.epsilon {
                issues.add("\(path).depthMm", "Needle depth \(formatMillimetres(depth)) mm is deeper than the plan's \(formatMillimetres(planned.depthMm)) mm for zone '\(name)' by more than the \(formatMillimetres(tolerance)) mm the plan allows")
            } else if abs(steps - steps.rounded()) > 1e-6 {
                issues.add("\(path).depthMm", "\(formatMillimetres(depth)) mm is not a setting of \(device.displayName) (steps of \(formatMillimetres(device.depthStepMm)) mm)")
            }
            if !(1...p.procedure.maximumPasses).contains(zone.passes) { issues.add("\(path).passes", "must be 1 to \(p.procedure.maximumPasses) passes") }
            if !(1...3600).contains(zone.secondsInZone) { issues.add("\(path).secondsInZone", "must be 1 to 3600 seconds") }
            var charted = zone
            if let area = p.zone(zone.zone)?.defaultAreaCm2 {
                charted.estimatedChannelsPerCm2 = Int(Planning.channelsPerCm2(needles: device.needles, stampsPerSecond: device.stampsPerSecond,
                                                                              seconds: Double(zone.secondsInZone), areaCm2: area).rounded())
            }
            result.append(charted)
        }
        try issues.throwIfAny()
        return result
    }

    /// Why needling may not start yet: the anaesthetic has not had its minimum time and no reason overrides it.
    public static func numbingProblem(appliedAt: Date?, now: Date, minimumMinutes: Int, overrideReason: String?) -> String? {
        if let reason = overrideReason?.trimmingCharacters(in: .whitespacesAndNewlines), reason.count >= 10 { return nil }
        guard let appliedAt else {
            return "Record when the anaesthetic was applied, or give a reason to go without (at least 10 characters)."
        }
        let minutes = Int(now.timeIntervalSince(appliedAt) / 60)
        if minutes < minimumMinutes {
            return "The anaesthetic has had \(minutes) of the \(minimumMinutes) minutes the protocol requires; wait, or give a reason to proceed."
        }
        return nil
    }
}
