import Foundation

extension ClinicalProtocol {
    /// The protocol bundled with Dermis, validated. A broken bundle is a build defect, so this traps.
    public static let bundled: ClinicalProtocol = {
        do {
            return try loadBundled()
        } catch {
            fatalError("The bundled protocol.json is invalid: \(error)")
        }
    }()

    public static var bundledURL: URL {
        Bundle.module.url(forResource: "protocol", withExtension: "json")!
    }

    /// The bundled protocol file, validated (the engine's only read).
    static func loadBundled() throws -> ClinicalProtocol {
        try load(from: Data(contentsOf: bundledURL))
    }

    /// Decodes and validates a protocol (the bundled one or a clinic's override, read by the caller).
    public static func load(from data: Data) throws -> ClinicalProtocol {
        let loaded = try decodeInput(ClinicalProtocol.self, from: data)
        try loaded.validate()
        return loaded
    }

    /// Checks the clinical sense of the data: every contract id present, ranges ordered, references known.
    public func validate() throws {
        var issues = IssueCollector()
        if version.trimmingCharacters(in: .whitespaces).isEmpty { issues.add("version", "must not be empty") }
        if !(maxDepthMm > 0 && maxDepthMm <= Self.deepestNeedleMm) {
            issues.add("maxDepthMm", "must be above 0 and at most \(Self.deepestNeedleMm) mm (the deepest needle length in the sources), not \(maxDepthMm)")
        }

        let zoneIDs = zones.map(\.id)
        checkUnique(zoneIDs, at: "zones", into: &issues)
        for missing in Vocabulary.zones where !zoneIDs.contains(missing) {
            issues.add("zones", "the contract zone '\(missing)' is missing")
        }
        for (i, zone) in zones.enumerated() {
            let path = "zones[\(i)]"
            if !["face", "body"].contains(zone.region) { issues.add("\(path).region", "must be 'face' or 'body', not '\(zone.region)'") }
            if !(zone.defaultAreaCm2 > 0) { issues.add("\(path).defaultAreaCm2", "must be above 0") }
            checkDepths(zone.depthMm, at: "\(path).depthMm", into: &issues)
        }

        let indicationIDs = indications.map(\.id)
        checkUnique(indicationIDs, at: "indications", into: &issues)
        for missing in Vocabulary.indications where !indicationIDs.contains(missing) {
            issues.add("indications", "the contract indication '\(missing)' is missing")
        }
        for (i, indication) in indications.enumerated() {
            let path = "indications[\(i)]"
            for (j, zone) in (indication.zones ?? []).enumerated() {
                issues.requireKnown(zone, in: zoneIDs, kind: "zone", at: "\(path).zones[\(j)]")
            }
            checkSeries(sessions: indication.series.sessions, interval: indication.series.minIntervalDays, at: "\(path).series", into: &issues)
            for (j, rule) in indication.depthRules.enumerated() {
                for (k, zone) in (rule.zones ?? []).enumerated() {
                    issues.requireKnown(zone, in: zoneIDs, kind: "zone", at: "\(path).depthRules[\(j)].zones[\(k)]")
                }
                checkDepths(rule.depthMm, at: "\(path).depthRules[\(j)].depthMm", into: &issues)
            }
        }
        for (i, series) in zoneSeries.enumerated() {
            for (j, zone) in series.zones.enumerated() {
                issues.requireKnown(zone, in: zoneIDs, kind: "zone", at: "zoneSeries[\(i)].zones[\(j)]")
            }
            checkSeries(sessions: series.sessions, interval: series.minIntervalDays, at: "zoneSeries[\(i)]", into: &issues)
        }

        checkUnique(contraindications.map(\.id), at: "contraindications", into: &issues)
        for (i, rule) in contraindications.enumerated() {
            checkRule(rule, at: "contraindications[\(i)]", zoneIDs: zoneIDs, into: &issues)
        }

        if anaesthetic.minimumMinutes < 0 { issues.add("anaesthetic.minimumMinutes", "must not be negative") }
        if procedure.defaultPasses < 1 { issues.add("procedure.defaultPasses", "must be at least 1") }
        if procedure.maximumPasses < procedure.defaultPasses {
            issues.add("procedure.maximumPasses", "must be at least defaultPasses (\(procedure.defaultPasses))")
        }
        if !(procedure.coverageCm2PerMinute > 0) { issues.add("procedure.coverageCm2PerMinute", "must be above 0") }
        let target = procedure.targetChannelsPerCm2
        if !(target.min > 0 && target.min <= target.max) {
            issues.add("procedure.targetChannelsPerCm2", "needs 0 < min ≤ max, not \(target.min)–\(target.max)")
        }
        for (name, value) in [("preparationMinutes", procedure.preparationMinutes), ("checkInMinutes", procedure.checkInMinutes),
                              ("closingMinutes", procedure.closingMinutes)] where value < 0 {
            issues.add("procedure.\(name)", "must not be negative")
        }

        checkDowntime(into: &issues)
        checkAftercare(into: &issues)
        checkOutcomeScales(indicationIDs: indications.map(\.id), into: &issues)
        checkFollowUp(into: &issues)

        checkUnique(devices.map(\.id), at: "devices", into: &issues)
        if devices.isEmpty { issues.add("devices", "must list at least one device") }
        for (i, device) in devices.enumerated() {
            let path = "devices[\(i)]"
            if !(device.depthStepMm > 0) { issues.add("\(path).depthStepMm", "must be above 0") }
            if !(device.minDepthMm > 0 && device.minDepthMm <= device.maxDepthMm) {
                issues.add("\(path).minDepthMm", "needs 0 < minDepthMm ≤ maxDepthMm, not \(device.minDepthMm)–\(device.maxDepthMm)")
            }
            if device.needles < 1 { issues.add("\(path).needles", "must be at least 1") }
            if !(device.stampsPerSecond > 0) { issues.add("\(path).stampsPerSecond", "must be above 0") }
        }
        for (i, note) in deviceNotes.enumerated() {
            for (j, zone) in note.zones.enumerated() {
                issues.requireKnown(zone, in: zoneIDs, kind: "zone", at: "deviceNotes[\(i)].zones[\(j)]")
            }
        }
        try issues.throwIfAny()
    }

    private func checkUnique(_ ids: [String], at path: String, into issues: inout IssueCollector) {
        var seen = Set<String>()
        for (i, id) in ids.enumerated() {
            if id.isEmpty { issues.add("\(path)[\(i)].id", "must not be empty") }
            if !seen.insert(id).inserted { issues.add("\(path)[\(i)].id", "'\(id)' appears more than once") }
        }
    }

    private func checkDepths(_ depths: DepthByThickness, at path: String, into issues: inout IssueCollector) {
        for skin in SkinThickness.allCases {
            let range = depths[skin]
            if !(range.min > 0 && range.min <= range.max) {
                issues.add("\(path).\(skin.rawValue)", "needs 0 < min ≤ max, not \(range.min)–\(range.max) mm")
            } else if range.max > Self.deepestNeedleMm {
                issues.add("\(path).\(skin.rawValue).max", "\(range.max) mm is deeper than \(Self.deepestNeedleMm) mm, the deepest needle length in the sources")
            }
        }
    }

    private func checkSeries(sessions: Int, interval: Int, at path: String, into issues: inout IssueCollector) {
        if sessions < 1 { issues.add("\(path).sessions", "must be at least 1") }
        if interval < 1 { issues.add("\(path).minIntervalDays", "must be at least 1 day") }
    }

    private func checkRule(_ rule: ContraindicationRule, at path: String, zoneIDs: [String], into issues: inout IssueCollector) {
        if rule.message.isEmpty { issues.add("\(path).message", "must not be empty") }
        if rule.source.isEmpty { issues.add("\(path).source", "every rule needs its source") }
        for (j, zone) in (rule.zones ?? []).enumerated() {
            issues.requireKnown(zone, in: zoneIDs, kind: "zone", at: "\(path).zones[\(j)]")
        }
        if let duration = rule.deferFor {
            if rule.kind != .deferral { issues.add("\(path).deferFor", "only a deferral has a duration") }
            if (duration.months ?? 0) < 0 || (duration.days ?? 0) < 0 || (duration.months ?? 0) + (duration.days ?? 0) == 0 {
                issues.add("\(path).deferFor", "needs a positive number of months or days")
            }
        }
        let trigger = rule.trigger
        let vocabulary: (kind: String, codes: [String])? = switch trigger.type {
        case .condition: ("condition code", Vocabulary.conditions)
        case .medication: ("medication code", Vocabulary.medications)
        case .allergy: ("allergy code", Vocabulary.allergies)
        case .procedure: ("procedure kind", Vocabulary.procedures)
        case .pregnant, .nursing, .fitzpatrick: nil
        }
        if let vocabulary {
            let codes = trigger.codes ?? []
            if codes.isEmpty { issues.add("\(path).trigger.codes", "must list at least one code") }
            for (j, code) in codes.enumerated() {
                issues.requireKnown(code, in: vocabulary.codes, kind: vocabulary.kind, at: "\(path).trigger.codes[\(j)]")
            }
        }
        if trigger.type == .medication && trigger.status == nil {
            issues.add("\(path).trigger.status", "a medication rule needs 'current' or 'stopped'")
        }
        if trigger.type == .medication && trigger.status == .stopped && rule.deferFor == nil {
            issues.add("\(path).deferFor", "a rule on a stopped medication needs a duration after the last dose")
        }
        if trigger.type == .procedure && rule.kind == .deferral && rule.deferFor == nil {
            issues.add("\(path).deferFor", "a deferral after a procedure needs a duration")
        }
        if trigger.type == .fitzpatrick {
            let outside = trigger.outside ?? []
            if outside.isEmpty || !outside.allSatisfy(Vocabulary.fitzpatrickTypes.contains) {
                issues.add("\(path).trigger.outside", "must list Fitzpatrick types 1–6")
            }
        }
    }

    private func checkDowntime(into issues: inout IssueCollector) {
        if downtime.isEmpty { issues.add("downtime", "must list at least one band") }
        var previous = 0.0
        for (i, band) in downtime.enumerated() {
            if !(band.maxDepthMm > previous) {
                issues.add("downtime[\(i)].maxDepthMm", "bands must rise in depth (\(band.maxDepthMm) after \(previous))")
            }
            if !(0 <= band.minDays && band.minDays <= band.maxDays) {
                issues.add("downtime[\(i)]", "needs 0 ≤ minDays ≤ maxDays")
            }
            previous = band.maxDepthMm
        }
        if let last = downtime.last, last.maxDepthMm < maxDepthMm {
            issues.add("downtime[\(downtime.count - 1)].maxDepthMm", "the last band must reach the protocol's maximum depth \(maxDepthMm) mm")
        }
    }

    private func checkAftercare(into issues: inout IssueCollector) {
        if aftercare.isEmpty { issues.add("aftercare", "must list at least one instruction") }
        checkUnique(aftercare.map(\.id), at: "aftercare", into: &issues)
        for (i, item) in aftercare.enumerated() {
            let path = "aftercare[\(i)]"
            if item.fromHour < 0 { issues.add("\(path).fromHour", "must not be negative") }
            if let to = item.toHour, to <= item.fromHour { issues.add("\(path).toHour", "must be after fromHour") }
            if item.toHour != nil && item.downtimeEnd == true { issues.add("\(path).toHour", "give toHour or downtimeEnd, not both") }
            if item.instruction.isEmpty { issues.add("\(path).instruction", "must not be empty") }
        }
    }

    private func checkOutcomeScales(indicationIDs: [String], into issues: inout IssueCollector) {
        checkUnique(outcomeScales.map(\.id), at: "outcomeScales", into: &issues)
        for (i, scale) in outcomeScales.enumerated() {
            let path = "outcomeScales[\(i)]"
            if scale.min >= scale.max { issues.add("\(path).max", "must be above min (\(scale.min))") }
            if !["lower", "higher"].contains(scale.better) { issues.add("\(path).better", "must be 'lower' or 'higher'") }
            if scale.raters.isEmpty { issues.add("\(path).raters", "must name at least one rater") }
            for (j, rater) in scale.raters.enumerated() where !OutcomeRater.allValues.contains(rater) {
                issues.add("\(path).raters[\(j)]", "must be one of \(OutcomeRater.allValues.joined(separator: ", "))")
            }
            for (j, indication) in (scale.indications ?? []).enumerated() {
                issues.requireKnown(indication, in: indicationIDs, kind: "indication", at: "\(path).indications[\(j)]")
            }
            if scale.levels.isEmpty { issues.add("\(path).levels", "must define at least one level") }
            var seen = Set<Int>()
            for (j, level) in scale.levels.enumerated() {
                if !(scale.min...max(scale.min, scale.max)).contains(level.value) {
                    issues.add("\(path).levels[\(j)].value", "\(level.value) is outside \(scale.min)–\(scale.max)")
                }
                if !seen.insert(level.value).inserted { issues.add("\(path).levels[\(j)].value", "\(level.value) appears more than once") }
                if level.label.isEmpty { issues.add("\(path).levels[\(j)].label", "must not be empty") }
            }
        }
    }

    private func checkFollowUp(into issues: inout IssueCollector) {
        if followUp.linkValidDays < 1 { issues.add("followUp.linkValidDays", "must be at least 1") }
        if followUp.checkInsPerLinkPerDay < 1 { issues.add("followUp.checkInsPerLinkPerDay", "must be at least 1") }
        if let invitations = followUp.invitations {
            let path = "followUp.invitations"
            for (i, day) in invitations.checkInDays.enumerated() where !(1..<followUp.linkValidDays).contains(day) {
                issues.add("\(path).checkInDays[\(i)]", "must be a day from 1 to \(followUp.linkValidDays - 1), while the link works")
            }
            if Set(invitations.checkInDays).count != invitations.checkInDays.count { issues.add("\(path).checkInDays", "lists a day twice") }
            if !(0...23).contains(invitations.localHour) { issues.add("\(path).localHour", "must be an hour from 0 to 23") }
            if invitations.overdueAfterDays < 1 { issues.add("\(path).overdueAfterDays", "must be at least 1") }
            if !(1..<followUp.linkValidDays).contains(invitations.rateResultDay) {
                issues.add("\(path).rateResultDay", "must be a day from 1 to \(followUp.linkValidDays - 1), while the link works")
            }
            if invitations.source.isEmpty || invitations.checkInDaysSource.isEmpty { issues.add(path, "must name its sources") }
        }
        let scaleIDs = outcomeScales.map(\.id)
        issues.requireKnown(followUp.rednessScale, in: scaleIDs, kind: "outcome scale", at: "followUp.rednessScale")
        issues.requireKnown(followUp.painScale, in: scaleIDs, kind: "outcome scale", at: "followUp.painScale")
        checkUnique(followUp.flags.map(\.id), at: "followUp.flags", into: &issues)
        checkUnique(followUp.infectionSigns.map(\.id), at: "followUp.infectionSigns", into: &issues)
        checkUnique(followUp.eventTypes.map(\.id), at: "followUp.eventTypes", into: &issues)
        for (i, flag) in followUp.flags.enumerated() {
            let path = "followUp.flags[\(i)]"
            issues.requireKnown(flag.kind, in: CheckInRules.kinds, kind: "flag kind", at: "\(path).kind")
            issues.requireKnown(flag.severity, in: AdverseSeverity.allValues, kind: "severity", at: "\(path).severity")
            issues.requireKnown(flag.eventType, in: followUp.eventTypes.map(\.id), kind: "event type", at: "\(path).eventType")
            if flag.kind == "pain-rising", (flag.afterDay ?? -1) < 0 { issues.add("\(path).afterDay", "the pain rule needs afterDay ≥ 0") }
            if flag.kind == "redness-beyond-downtime", (flag.minimumGrade ?? -1) < 0 { issues.add("\(path).minimumGrade", "the redness rule needs minimumGrade ≥ 0") }
            if flag.message.isEmpty { issues.add("\(path).message", "must not be empty") }
        }
    }
}
