import Foundation

/// docs/CONTRACT.md's plan request: what to treat, on whom, with which pen, by whom.
public struct PlanRequest: Codable, Sendable, Hashable {
    public struct ZoneIndication: Codable, Sendable, Hashable {
        public var zone: String
        public var indication: String
        public init(zone: String, indication: String) {
            self.zone = zone
            self.indication = indication
        }
    }

    public var zones: [ZoneIndication]
    public var skin: String
    public var fitzpatrickType: Int?
    public var device: String
    public var practitionerMaxDepthMm: Double
    /// The first session; today in the clinic's zone when absent.
    public var startDate: CalendarDate?

    public init(zones: [ZoneIndication], skin: SkinThickness, fitzpatrickType: Int? = nil, device: String,
                practitionerMaxDepthMm: Double, startDate: CalendarDate? = nil) {
        self.zones = zones
        self.skin = skin.rawValue
        self.fitzpatrickType = fitzpatrickType
        self.device = device
        self.practitionerMaxDepthMm = practitionerMaxDepthMm
        self.startDate = startDate
    }
}

/// A note attached to a planned zone: a labeling limit, a conservative default, a depth below range.
public struct PlanNote: Codable, Sendable, Hashable {
    public var rule: String
    public var message: String
    public var source: String
}

/// docs/CONTRACT.md's plan result.
public struct PlanResult: Codable, Sendable, Hashable {
    public struct PlannedZone: Codable, Sendable, Hashable {
        public var zone: String
        public var indication: String
        public var depthMm: Double
        public var recommendedDepthMm: Double
        /// `device`, `practitioner` or `protocol`; absent when the recommended depth is used.
        public var limitedBy: String?
        public var passes: Int
        public var pattern: String
        public var estimatedChannelsPerCm2: Int
        // Extensions of the contract shape: the why behind the numbers.
        public var limitReason: String?
        public var depthRangeMm: ClinicalProtocol.DepthRange
        public var depthSource: String
        public var areaCm2: Double
        /// Pen-on-skin seconds in the zone (all passes) to reach the target density.
        public var secondsInZone: Int
        public var procedureMinutes: Int
        public var notes: [PlanNote]
    }

    public struct Series: Codable, Sendable, Hashable {
        public var sessions: Int
        public var minIntervalDays: Int
        public var proposedDates: [CalendarDate]
        public var sources: [String]
    }

    public struct Downtime: Codable, Sendable, Hashable {
        public var min: Int
        public var max: Int
        public var depthMm: Double
        public var source: String
    }

    public struct AftercareItem: Codable, Sendable, Hashable {
        public var fromHour: Int
        public var toHour: Int?
        public var instruction: String
        public var id: String
        public var source: String
    }

    public var zones: [PlannedZone]
    public var numbingMinutes: Int
    public var procedureMinutes: Int
    public var appointmentMinutes: Int
    public var series: Series
    public var downtimeDays: Downtime
    public var aftercare: [AftercareItem]
    public var protocolVersion: String
}

public enum Planning {
    /// Plans a treatment: depth per zone inside the protocol's range and every limit, timing, series,
    /// downtime from the deepest zone, and the aftercare timeline.
    public static func plan(_ request: PlanRequest, today: CalendarDate, protocol p: ClinicalProtocol) throws -> PlanResult {
        let (skin, device) = try validate(request, protocol: p)
        let startDate = request.startDate ?? today

        var planned: [PlanResult.PlannedZone] = []
        for item in request.zones {
            planned.append(planZone(item, skin: skin, device: device, request: request, protocol: p))
        }

        let (numbingMinutes, procedureMinutes, appointmentMinutes) = timing(zoneMinutes: planned.map(\.procedureMinutes), protocol: p)

        let deepest = planned.map(\.depthMm).max()!
        let band = downtimeBand(for: deepest, protocol: p)
        let downtime = PlanResult.Downtime(min: band.minDays, max: band.maxDays, depthMm: deepest, source: band.source)

        return PlanResult(
            zones: planned,
            numbingMinutes: numbingMinutes,
            procedureMinutes: procedureMinutes,
            appointmentMinutes: appointmentMinutes,
            series: series(for: request.zones, from: startDate, protocol: p),
            downtimeDays: downtime,
            aftercare: aftercare(downtime: downtime, protocol: p),
            protocolVersion: p.version)
    }

    /// The downtime band a depth falls in: the first whose upper bound it does not exceed.
    public static func downtimeBand(for depthMm: Double, protocol p: ClinicalProtocol) -> ClinicalProtocol.DowntimeBand {
        p.downtime.first { depthMm <= $0.maxDepthMm + epsilon } ?? p.downtime.last!
    }

    /// Channels per cm² for a pen held in a zone: needles × stamps per second × seconds ÷ area.
    public static func channelsPerCm2(needles: Int, stampsPerSecond: Double, seconds: Double, areaCm2: Double) -> Double {
        Double(needles) * stampsPerSecond * seconds / areaCm2
    }

    static let epsilon = 1e-9

    /// Rounds a depth down to the device's step (2.6 → 2.5 with 0.25 mm steps).
    static func floor(_ depth: Double, toStep step: Double) -> Double {
        let steps = (depth / step + epsilon).rounded(.down)
        return ((steps * step) * 1000).rounded() / 1000
    }

    private static func validate(_ request: PlanRequest, protocol p: ClinicalProtocol) throws
        -> (SkinThickness, ClinicalProtocol.DeviceProfile) {
        var issues = IssueCollector()
        let zoneIDs = p.zones.map(\.id)
        if request.zones.isEmpty { issues.add("zones", "must list at least one zone with its indication") }
        var seen = Set<String>()
        for (i, item) in request.zones.enumerated() {
            issues.requireKnown(item.zone, in: zoneIDs, kind: "zone", at: "zones[\(i)].zone")
            issues.requireKnown(item.indication, in: p.indications.map(\.id), kind: "indication", at: "zones[\(i)].indication")
            if let indication = p.indication(item.indication), let allowed = indication.zones, zoneIDs.contains(item.zone),
               !allowed.contains(item.zone) {
                issues.add("zones[\(i)].indication", "'\(item.indication)' is not treated on '\(item.zone)'; it applies to: \(allowed.joined(separator: ", "))")
            }
            if !seen.insert(item.zone).inserted {
                issues.add("zones[\(i)].zone", "'\(item.zone)' appears more than once; plan one indication per zone")
            }
        }
        let skin = SkinThickness(rawValue: request.skin)
        if skin == nil {
            issues.add("skin", "unknown skin thickness '\(request.skin)'; valid: \(SkinThickness.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let type = request.fitzpatrickType, !Vocabulary.fitzpatrickTypes.contains(type) {
            issues.add("fitzpatrickType", "must be a whole number from 1 to 6, not \(type)")
        }
        let device = p.device(request.device)
        if device == nil {
            issues.requireKnown(request.device, in: p.devices.map(\.id), kind: "device", at: "device")
        }
        let maximum = request.practitionerMaxDepthMm
        if !(maximum > 0) || !maximum.isFinite {
            issues.add("practitionerMaxDepthMm", "must be a depth in mm above 0, not \(maximum)")
        } else if let device, maximum + epsilon < device.minDepthMm {
            issues.add("practitionerMaxDepthMm", "\(formatMillimetres(maximum)) mm is below the shallowest setting of \(device.displayName) (\(formatMillimetres(device.minDepthMm)) mm)")
        }
        try issues.throwIfAny()
        return (skin!, device!)
    }

    private static func planZone(_ item: PlanRequest.ZoneIndication, skin: SkinThickness, device: ClinicalProtocol.DeviceProfile,
                                 request: PlanRequest, protocol p: ClinicalProtocol) -> PlanResult.PlannedZone {
        let zone = p.zone(item.zone)!
        let indication = p.indication(item.indication)!
        let rule = indication.depthRules.first { $0.zones?.contains(zone.id) ?? true }
        let range = rule?.depthMm[skin] ?? zone.depthMm[skin]
        let depthSource = rule?.source ?? zone.depthSource
        var notes: [PlanNote] = []
        if rule?.conservativeDefault ?? zone.depthConservativeDefault ?? false {
            notes.append(PlanNote(rule: "depth-conservative-default", message: "No published depth for this zone and indication; the range is a conservative clinic default.", source: depthSource))
        }

        // The recommended depth is the top of the range; every limit then cuts it, and the device's step rounds it down.
        let recommended = range.max
        let limits: [(name: String, value: Double, reason: String)] = [
            ("protocol", p.maxDepthMm, "the protocol's maximum of \(formatMillimetres(p.maxDepthMm)) mm"),
            ("device", device.maxDepthMm, "\(device.displayName)'s maximum of \(formatMillimetres(device.maxDepthMm)) mm"),
            ("practitioner", request.practitionerMaxDepthMm, "the practitioner's licensed maximum of \(formatMillimetres(request.practitionerMaxDepthMm)) mm"),
        ]
        let binding = limits.filter { $0.value + epsilon < recommended }.min { $0.value < $1.value }
        let depth = floor(Swift.min(recommended, binding?.value ?? recommended), toStep: device.depthStepMm)
        var limitedBy: String?
        var limitReason: String?
        if let binding {
            limitedBy = binding.name
            limitReason = "Recommended \(formatMillimetres(recommended)) mm cut to \(formatMillimetres(depth)) mm by \(binding.reason)."
        } else if depth + epsilon < recommended {
            limitedBy = "device"
            limitReason = "Recommended \(formatMillimetres(recommended)) mm rounded down to \(formatMillimetres(depth)) mm, \(device.displayName)'s \(formatMillimetres(device.depthStepMm)) mm step."
        }
        if depth + epsilon < range.min {
            notes.append(PlanNote(rule: "below-protocol-range", message: "\(formatMillimetres(depth)) mm is below the protocol range \(formatMillimetres(range.min))–\(formatMillimetres(range.max)) mm for this zone; expect a smaller effect.", source: depthSource))
        }
        if let evaluated = device.evaluatedMaxDepthMm, depth > evaluated + epsilon {
            notes.append(PlanNote(rule: "device-not-evaluated-depth", message: "Settings above \(formatMillimetres(evaluated)) mm were not evaluated by the maker of \(device.displayName).", source: device.source))
        }
        for note in p.deviceNotes where note.zones.contains(zone.id) {
            notes.append(PlanNote(rule: note.id, message: note.message, source: note.source))
        }
        if let type = request.fitzpatrickType {
            for rule in p.contraindications where rule.trigger.type == .fitzpatrick && (rule.zones?.contains(zone.id) ?? true)
                && !(rule.trigger.outside ?? []).contains(type) {
                notes.append(PlanNote(rule: rule.id, message: rule.message, source: rule.source))
            }
        }
        if let note = indication.note {
            notes.append(PlanNote(rule: "\(indication.id)-note", message: note.message, source: note.source))
        }

        // Pen-on-skin time to reach the middle of the target density, in whole seconds.
        let timing = p.procedure
        let passes = timing.defaultPasses
        let target = (timing.targetChannelsPerCm2.min + timing.targetChannelsPerCm2.max) / 2
        let channelsPerSecond = Double(device.needles) * device.stampsPerSecond
        let secondsInZone = Int((target * zone.defaultAreaCm2 / channelsPerSecond).rounded(.up))
        let channels = channelsPerCm2(needles: device.needles, stampsPerSecond: device.stampsPerSecond,
                                      seconds: Double(secondsInZone), areaCm2: zone.defaultAreaCm2)
        let minutes = zoneMinutes(zone, protocol: p)

        return PlanResult.PlannedZone(
            zone: zone.id, indication: indication.id, depthMm: depth, recommendedDepthMm: recommended,
            limitedBy: limitedBy, passes: passes, pattern: timing.defaultPattern,
            estimatedChannelsPerCm2: Int(channels.rounded()), limitReason: limitReason, depthRangeMm: range,
            depthSource: depthSource, areaCm2: zone.defaultAreaCm2, secondsInZone: secondsInZone,
            procedureMinutes: minutes, notes: notes)
    }

    /// The most conservative series over the planned zones: most sessions, longest minimum interval.
    private static func series(for items: [PlanRequest.ZoneIndication], from start: CalendarDate,
                               protocol p: ClinicalProtocol) -> PlanResult.Series {
        var sessions = 1
        var interval = 1
        var sources: [String] = []
        func include(_ s: Int, _ days: Int, _ source: String) {
            sessions = max(sessions, s)
            interval = max(interval, days)
            if !sources.contains(source) { sources.append(source) }
        }
        for item in items {
            let series = p.indication(item.indication)!.series
            include(series.sessions, series.minIntervalDays, series.source)
            for zoneSeries in p.zoneSeries where zoneSeries.zones.contains(item.zone) {
                include(zoneSeries.sessions, zoneSeries.minIntervalDays, zoneSeries.source)
            }
        }
        let dates = (0..<sessions).map { start.adding(days: $0 * interval) }
        return PlanResult.Series(sessions: sessions, minIntervalDays: interval, proposedDates: dates, sources: sources)
    }

    /// One zone's pen time at the default passes: its area times passes over the coverage rate.
    static func zoneMinutes(_ zone: ClinicalProtocol.Zone, protocol p: ClinicalProtocol) -> Int {
        Int((zone.defaultAreaCm2 * Double(p.procedure.defaultPasses) / p.procedure.coverageCm2PerMinute).rounded(.up))
    }

    /// Numbing, procedure and whole-appointment minutes from each zone's pen time: what a booking must hold.
    static func timing(zoneMinutes: [Int], protocol p: ClinicalProtocol) -> (numbing: Int, procedure: Int, appointment: Int) {
        let timing = p.procedure
        let procedure = timing.preparationMinutes + zoneMinutes.reduce(0, +)
        let numbing = p.anaesthetic.minimumMinutes
        return (numbing, procedure, timing.checkInMinutes + numbing + procedure + timing.closingMinutes)
    }

    /// The appointment a treatment of these zones needs, as `plan` computes it (the indication does not change the
    /// time): check-in, numbing, preparation, each zone's passes over its area, closing. Unknown zones are refused.
    public static func appointmentMinutes(zones: [String], protocol p: ClinicalProtocol) throws -> Int {
        guard !zones.isEmpty else { throw InvalidInput(path: "zones", problem: "choose at least one zone") }
        var issues = IssueCollector()
        var minutes: [Int] = []
        for (i, id) in zones.enumerated() {
            guard let zone = p.zone(id) else {
                issues.requireKnown(id, in: p.zones.map(\.id), kind: "zone", at: "zones[\(i)]")
                continue
            }
            minutes.append(zoneMinutes(zone, protocol: p))
        }
        try issues.throwIfAny()
        return timing(zoneMinutes: minutes, protocol: p).appointment
    }

    /// The aftercare timeline, with the expected-redness item ending when the downtime does.
    public static func aftercare(downtime: PlanResult.Downtime, protocol p: ClinicalProtocol) -> [PlanResult.AftercareItem] {
        p.aftercare.map { rule in
            let to = rule.downtimeEnd == true ? downtime.max * 24 : rule.toHour
            let text = rule.instruction
                .replacingOccurrences(of: "{minDays}", with: String(downtime.min))
                .replacingOccurrences(of: "{maxDays}", with: String(downtime.max))
            return PlanResult.AftercareItem(fromHour: rule.fromHour, toHour: to, instruction: text, id: rule.id, source: rule.source)
        }
        .sorted { ($0.fromHour, $0.toHour ?? .max) < ($1.fromHour, $1.toHour ?? .max) }
    }
}

/// A depth as a clinician writes it, always with a decimal: 1.5, 0.25, 2.0.
public func formatMillimetres(_ mm: Double) -> String {
    let text = String(format: "%.2f", mm)
    return text.hasSuffix("0") ? String(text.dropLast()) : text
}
