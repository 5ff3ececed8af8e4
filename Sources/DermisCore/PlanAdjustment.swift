import Foundation

/// A practitioner's change to one zone of the engine's plan.
public struct PlanAdjustment: Codable, Sendable, Hashable {
    public var zone: String
    public var depthMm: Double?
    public var passes: Int?

    public init(zone: String, depthMm: Double? = nil, passes: Int? = nil) {
        self.zone = zone
        self.depthMm = depthMm
        self.passes = passes
    }
}

extension Planning {
    /// Applies a practitioner's adjustments to the engine's plan. A depth may be changed within every limit —
    /// never above the device's maximum, the practitioner's licensed maximum or the protocol's — and must sit on the
    /// device's step; passes stay within the protocol's 1…maximumPasses. Downtime and aftercare follow the adjusted deepest zone.
    public static func adjust(_ plan: PlanResult, with adjustments: [PlanAdjustment], request: PlanRequest,
                              protocol p: ClinicalProtocol) throws -> PlanResult {
        guard let device = p.device(request.device) else {
            throw InvalidInput(path: "device", problem: "unknown device '\(request.device)'")
        }
        var issues = IssueCollector()
        var adjusted = plan
        for (i, change) in adjustments.enumerated() {
            guard let index = adjusted.zones.firstIndex(where: { $0.zone == change.zone }) else {
                issues.add("adjustments[\(i)].zone", "'\(change.zone)' is not in the plan")
                continue
            }
            let name = p.zone(change.zone)?.displayName ?? change.zone
            if let depth = change.depthMm {
                let steps = depth / device.depthStepMm
                if !(depth > 0) || !depth.isFinite {
                    issues.add("depth.\(change.zone)", "must be a depth above 0 mm")
                } else if depth > device.maxDepthMm + epsilon {
                    issues.add("depth.\(change.zone)", "\(formatMillimetres(depth)) mm for \(name) exceeds the device's maximum of \(formatMillimetres(device.maxDepthMm)) mm")
                } else if depth > request.practitionerMaxDepthMm + epsilon {
                    issues.add("depth.\(change.zone)", "\(formatMillimetres(depth)) mm for \(name) exceeds your licensed maximum of \(formatMillimetres(request.practitionerMaxDepthMm)) mm")
                } else if depth > p.maxDepthMm + epsilon {
                    issues.add("depth.\(change.zone)", "\(formatMillimetres(depth)) mm for \(name) exceeds the protocol's maximum of \(formatMillimetres(p.maxDepthMm)) mm")
                } else if abs(steps - steps.rounded()) > 1e-6 || depth + epsilon < device.minDepthMm {
                    issues.add("depth.\(change.zone)", "\(formatMillimetres(depth)) mm is not a setting of \(device.displayName) (steps of \(formatMillimetres(device.depthStepMm)) mm from \(formatMillimetres(device.minDepthMm)) mm)")
                } else {
                    adjusted.zones[index].depthMm = depth
                }
            }
            if let passes = change.passes {
                if (1...p.procedure.maximumPasses).contains(passes) {
                    adjusted.zones[index].passes = passes
                } else {
                    issues.add("passes.\(change.zone)", "must be 1 to \(p.procedure.maximumPasses) passes")
                }
            }
        }
        try issues.throwIfAny()
        let deepest = adjusted.zones.map(\.depthMm).max() ?? 0
        let band = downtimeBand(for: deepest, protocol: p)
        adjusted.downtimeDays = PlanResult.Downtime(min: band.minDays, max: band.maxDays, depthMm: deepest, source: band.source)
        adjusted.aftercare = aftercare(downtime: adjusted.downtimeDays, protocol: p)
        return adjusted
    }
}
