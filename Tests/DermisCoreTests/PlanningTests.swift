import Foundation
import Testing
@testable import DermisCore

@Suite struct PlanningTests {
    @Test func theContractExamplePlansAsDocumented() throws {
        let plan = try Fixture.plan(Fixture.request(maxDepth: 1.5))
        let cheeks = try #require(plan.zones.first)
        #expect(cheeks.depthMm == 1.5 && cheeks.recommendedDepthMm == 2.0 && cheeks.limitedBy == "practitioner")
        #expect(cheeks.passes == 4 && cheeks.pattern == "crosshatch")
        #expect((250...300).contains(cheeks.estimatedChannelsPerCm2))
        #expect(plan.numbingMinutes == 30)
        #expect(plan.series.sessions == 3 && plan.series.minIntervalDays == 28)
        #expect(plan.series.proposedDates.map(\.description) == ["2026-12-01", "2026-12-29", "2027-01-26"])
        #expect(plan.downtimeDays.min == 4 && plan.downtimeDays.max == 5)
        #expect(plan.appointmentMinutes == plan.numbingMinutes + plan.procedureMinutes
                + Fixture.protocolData.procedure.checkInMinutes + Fixture.protocolData.procedure.closingMinutes)
    }

    // MARK: Depth limits, at the limit and one step over

    @Test func aPractitionerMaximumAtTheRecommendedDepthDoesNotLimit() throws {
        let zone = try #require(try Fixture.plan(Fixture.request(maxDepth: 2.0)).zones.first)
        #expect(zone.depthMm == 2.0 && zone.limitedBy == nil && zone.limitReason == nil)
    }

    @Test func aPractitionerMaximumOneStepBelowLimitsAndSaysWhy() throws {
        let zone = try #require(try Fixture.plan(Fixture.request(maxDepth: 1.75)).zones.first)
        #expect(zone.depthMm == 1.75 && zone.limitedBy == "practitioner")
        #expect(zone.limitReason?.contains("licensed maximum of 1.75 mm") == true)
    }

    @Test func aMaximumBetweenStepsRoundsDownToTheDevicesStep() throws {
        let zone = try #require(try Fixture.plan(Fixture.request(maxDepth: 1.9)).zones.first)
        #expect(zone.depthMm == 1.75 && zone.limitedBy == "practitioner")
    }

    @Test func theDeviceMaximumLimitsAtAndOneStepOver() throws {
        let atLimit = Fixture.protocolWith { $0.devices[0].maxDepthMm = 2.0 }
        #expect(try Fixture.plan(Fixture.request(), protocol: atLimit).zones[0].limitedBy == nil)
        let below = Fixture.protocolWith { $0.devices[0].maxDepthMm = 1.75 }
        let zone = try Fixture.plan(Fixture.request(), protocol: below).zones[0]
        #expect(zone.depthMm == 1.75 && zone.limitedBy == "device")
    }

    @Test func theProtocolMaximumLimitsAtAndOneStepOver() throws {
        let atLimit = Fixture.protocolWith { $0.maxDepthMm = 2.0 }
        #expect(try Fixture.plan(Fixture.request(), protocol: atLimit).zones[0].limitedBy == nil)
        let below = Fixture.protocolWith { $0.maxDepthMm = 1.75 }
        let zone = try Fixture.plan(Fixture.request(), protocol: below).zones[0]
        #expect(zone.depthMm == 1.75 && zone.limitedBy == "protocol")
    }

    @Test func theTightestLimitIsTheOneNamed() throws {
        let p = Fixture.protocolWith { $0.devices[0].maxDepthMm = 1.75 }
        let zone = try Fixture.plan(Fixture.request(maxDepth: 1.5), protocol: p).zones[0]
        #expect(zone.depthMm == 1.5 && zone.limitedBy == "practitioner")
    }

    @Test func aRecommendationBetweenStepsIsRoundedDownAndAttributedToTheDevice() throws {
        let zone = try Fixture.plan(Fixture.request([("scalp", "hair-loss")])).zones[0]
        #expect(zone.recommendedDepthMm == 0.6 && zone.depthMm == 0.5 && zone.limitedBy == "device")
    }

    @Test func depthNeverExceedsAnyLimitOrTwoAndAHalfMillimetres() throws {
        let p = Fixture.protocolData
        for device in p.devices {
            for skin in SkinThickness.allCases {
                for maximum in stride(from: 0.25, through: 3.5, by: 0.15) {
                    for indication in p.indications {
                        let zones = indication.zones ?? p.zones.map(\.id)
                        let plan = try Fixture.plan(Fixture.request(zones.map { ($0, indication.id) }, skin: skin, device: device.id, maxDepth: maximum))
                        for zone in plan.zones {
                            #expect(zone.depthMm <= min(device.maxDepthMm, maximum, 2.5) + 1e-9)
                            #expect(zone.depthMm >= device.minDepthMm - 1e-9)
                            let steps = zone.depthMm / device.depthStepMm
                            #expect(abs(steps - steps.rounded()) < 1e-9, "\(zone.depthMm) is not a step of \(device.id)")
                            #expect((zone.limitedBy == nil) == (zone.depthMm == zone.recommendedDepthMm))
                        }
                    }
                }
            }
        }
    }

    @Test func aDepthBelowTheProtocolRangeIsNoted() throws {
        let zone = try Fixture.plan(Fixture.request(maxDepth: 1.0)).zones[0]
        #expect(zone.notes.contains { $0.rule == "below-protocol-range" })
        let inRange = try Fixture.plan(Fixture.request(maxDepth: 1.5)).zones[0]
        #expect(!inRange.notes.contains { $0.rule == "below-protocol-range" })
    }

    @Test func skinPenSettingsAboveOnePointFiveAreFlaggedAsNotEvaluated() throws {
        #expect(try Fixture.plan(Fixture.request(maxDepth: 1.75)).zones[0].notes.contains { $0.rule == "device-not-evaluated-depth" })
        #expect(!(try Fixture.plan(Fixture.request(maxDepth: 1.5)).zones[0].notes.contains { $0.rule == "device-not-evaluated-depth" }))
    }

    @Test func thinSkinUsesTheThinRange() throws {
        let forehead = try Fixture.plan(Fixture.request([("forehead", "fine-lines")], skin: .thin)).zones[0]
        #expect(forehead.depthMm == 0.5 && forehead.depthRangeMm.min == 0.25)
    }

    // MARK: Timing, series, downtime, aftercare

    @Test func aFullFaceTakesThirtyToSixtyMinutesOfProcedure() throws {
        let face = Fixture.protocolData.zones.filter { $0.region == "face" }.map { ($0.id, "fine-lines") }
        #expect(face.count == 7)
        let plan = try Fixture.plan(Fixture.request(face))
        #expect((30...60).contains(plan.procedureMinutes), "\(plan.procedureMinutes) min")
        let cheeksOnly = try Fixture.plan(Fixture.request([("cheeks", "fine-lines")]))
        #expect(cheeksOnly.procedureMinutes < plan.procedureMinutes)
    }

    @Test func channelDensityFollowsNeedlesRateTimeAndArea() {
        #expect(Planning.channelsPerCm2(needles: 14, stampsPerSecond: 100, seconds: 20, areaCm2: 100) == 280)
        #expect(Planning.channelsPerCm2(needles: 11, stampsPerSecond: 90, seconds: 10, areaCm2: 45) == 220)
    }

    @Test func theSeriesTakesTheMostSessionsAndTheLongestInterval() throws {
        let plan = try Fixture.plan(Fixture.request([("cheeks", "acne-scars"), ("forehead", "melasma")]))
        #expect(plan.series.sessions == 6 && plan.series.minIntervalDays == 28)
        #expect(plan.series.proposedDates.last == Fixture.date("2026-12-01").adding(days: 5 * 28))
    }

    @Test func theNeckCarriesItsOwnMonthlySeries() throws {
        let plan = try Fixture.plan(Fixture.request([("neck", "melasma")]))
        #expect(plan.series.sessions == 6 && plan.series.minIntervalDays == 30)
        #expect(plan.series.sources.contains { $0.contains("PMC9472661") })
    }

    @Test func theSeriesStartsTodayWhenNoDateIsGiven() throws {
        let plan = try Fixture.plan(Fixture.request(start: nil))
        #expect(plan.series.proposedDates.first == Fixture.date("2026-11-27"))
    }

    @Test(arguments: [(0.25, 2, 3), (0.5, 2, 3), (0.75, 4, 5), (1.5, 4, 5), (1.75, 6, 7), (2.5, 6, 7)])
    func downtimeComesFromTheDeepestZone(depth: Double, minDays: Int, maxDays: Int) throws {
        let band = Planning.downtimeBand(for: depth, protocol: Fixture.protocolData)
        #expect(band.minDays == minDays && band.maxDays == maxDays)
    }

    @Test func downtimeBandsMeetThePlan() throws {
        let shallow = try Fixture.plan(Fixture.request([("forehead", "fine-lines")], maxDepth: 0.5))
        #expect(shallow.downtimeDays.min == 2 && shallow.downtimeDays.depthMm == 0.5)
        let mixed = try Fixture.plan(Fixture.request([("forehead", "fine-lines"), ("cheeks", "acne-scars")], maxDepth: 1.75))
        #expect(mixed.downtimeDays.min == 6 && mixed.downtimeDays.depthMm == 1.75)
    }

    @Test func aftercareFollowsTheHandoutAndEndsRednessWithTheDowntime() throws {
        let plan = try Fixture.plan(Fixture.request(maxDepth: 1.5))
        let byID = Dictionary(uniqueKeysWithValues: plan.aftercare.map { ($0.id, $0) })
        #expect(byID["nothing-on-skin"]?.toHour == 8)
        #expect(byID["no-makeup"]?.toHour == 24)
        #expect(byID["no-exercise"]?.toHour == 72)
        #expect(byID["sun-protection"]?.fromHour == 24 && byID["sun-protection"]?.toHour == 24 + 14 * 24)
        #expect(byID["resume-routine"]?.fromHour == 6 * 24 && byID["resume-routine"]?.toHour == nil)
        #expect(byID["expected-redness"]?.toHour == 5 * 24)
        #expect(byID["expected-redness"]?.instruction.contains("4–5 days") == true)
        #expect(plan.aftercare.allSatisfy { !$0.source.isEmpty })
        #expect(plan.aftercare.map(\.fromHour) == plan.aftercare.map(\.fromHour).sorted())
    }

    // MARK: Bad requests name the field and the valid ids

    @Test func unknownIdsAreRefusedWithTheValidOnes() {
        let issues = invalidIssues { _ = try Fixture.plan(Fixture.request([("cheek", "scars")], device: "microneedler")) }
        #expect(issues.map(\.path) == ["zones[0].zone", "zones[0].indication", "device"])
        #expect(issues[0].problem.contains("cheeks, perioral"))
        #expect(issues[1].problem.contains("acne-scars"))
        #expect(issues[2].problem.contains("skinpen, dermapen"))
    }

    @Test func anIndicationOutsideItsZonesIsRefused() {
        let issues = invalidIssues { _ = try Fixture.plan(Fixture.request([("cheeks", "hair-loss")])) }
        #expect(issues.map(\.path) == ["zones[0].indication"])
        #expect(issues[0].problem.contains("scalp"))
    }

    @Test func aZoneTwiceOrNoZonesIsRefused() {
        #expect(invalidIssues { _ = try Fixture.plan(Fixture.request([("cheeks", "acne-scars"), ("cheeks", "texture")])) }.map(\.path) == ["zones[1].zone"])
        #expect(invalidIssues { _ = try Fixture.plan(Fixture.request([])) }.map(\.path) == ["zones"])
    }

    @Test(arguments: [0.0, -1.0, 0.1, Double.nan])
    func aPractitionerMaximumThatCannotNeedleIsRefused(maximum: Double) {
        #expect(invalidIssues { _ = try Fixture.plan(Fixture.request(maxDepth: maximum)) }.map(\.path) == ["practitionerMaxDepthMm"])
    }

    @Test func badSkinAndFitzpatrickAreRefused() {
        var request = Fixture.request()
        request.skin = "medium"
        request.fitzpatrickType = 9
        #expect(invalidIssues { _ = try Fixture.plan(request) }.map(\.path) == ["skin", "fitzpatrickType"])
    }

    @Test func missingAndMistypedJSONFieldsAreNamed() {
        let missing = invalidIssues { _ = try decodeInput(PlanRequest.self, from: Data(#"{"zones":[{"zone":"cheeks"}],"skin":"thick","device":"skinpen","practitionerMaxDepthMm":1.5}"#.utf8)) }
        #expect(missing.map(\.path) == ["zones[0].indication"])
        let mistyped = invalidIssues { _ = try decodeInput(PlanRequest.self, from: Data(#"{"zones":[],"skin":"thick","device":"skinpen","practitionerMaxDepthMm":"deep"}"#.utf8)) }
        #expect(mistyped.map(\.path) == ["practitionerMaxDepthMm"])
        let badDate = invalidIssues { _ = try decodeInput(PlanRequest.self, from: Data(#"{"zones":[],"skin":"thick","device":"skinpen","practitionerMaxDepthMm":1,"startDate":"2026-02-29"}"#.utf8)) }
        #expect(badDate.map(\.path) == ["startDate"])
    }
}

@Suite struct ChannelDensityTests {
    @Test func everyZoneIsPlannedInsideTheTargetDensity() throws {
        let p = Fixture.protocolData
        for device in p.devices {
            let plan = try Fixture.plan(Fixture.request(p.zones.map { ($0.id, $0.id == "scalp" ? "hair-loss" : "texture") }, device: device.id))
            for zone in plan.zones {
                // Whole seconds overshoot the target a little on the smallest zones, never undershoot.
                #expect(Double(zone.estimatedChannelsPerCm2) >= p.procedure.targetChannelsPerCm2.min, "\(device.id) \(zone.zone)")
                #expect(Double(zone.estimatedChannelsPerCm2) <= p.procedure.targetChannelsPerCm2.max * 1.2, "\(device.id) \(zone.zone)")
            }
        }
    }

    @Test func depthsAreWrittenWithADecimal() {
        #expect(formatMillimetres(2) == "2.0")
        #expect(formatMillimetres(1.5) == "1.5")
        #expect(formatMillimetres(0.25) == "0.25")
    }
}

@Suite struct PlanAdjustmentTests {
    let request = Fixture.request([("cheeks", "acne-scars"), ("forehead", "fine-lines")], maxDepth: 1.5)

    @Test func aPractitionerMayLowerADepthAndDowntimeFollows() throws {
        let plan = try Fixture.plan(request)
        let adjusted = try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 0.5, passes: 6)], request: request, protocol: Fixture.protocolData)
        #expect(adjusted.zones[0].depthMm == 0.5 && adjusted.zones[0].passes == 6)
        #expect(adjusted.downtimeDays.min == 4, "the forehead's 0.75 mm is now the deepest")
        let shallow = try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 0.5), .init(zone: "forehead", depthMm: 0.5)],
                                          request: request, protocol: Fixture.protocolData)
        #expect(shallow.downtimeDays.max == 3)
        #expect(shallow.aftercare.first { $0.id == "expected-redness" }?.toHour == 72)
    }

    @Test func atTheLicensedMaximumIsFineOneStepOverIsRefusedNamingTheLimit() throws {
        let plan = try Fixture.plan(request)
        #expect(try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 1.5)], request: request, protocol: Fixture.protocolData).zones[0].depthMm == 1.5)
        let issues = invalidIssues { _ = try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 1.75)], request: self.request, protocol: Fixture.protocolData) }
        #expect(issues.map(\.path) == ["depth.cheeks"])
        #expect(issues.first?.problem.contains("licensed maximum of 1.5 mm") == true)
    }

    @Test func aboveTheDevicesMaximumIsRefusedNamingTheDevice() throws {
        var wide = request
        wide.practitionerMaxDepthMm = 3
        let plan = try Fixture.plan(wide)
        let issues = invalidIssues { _ = try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 2.75)], request: wide, protocol: Fixture.protocolData) }
        #expect(issues.first?.problem.contains("device's maximum of 2.5 mm") == true)
    }

    @Test func offStepDepthsPassesAndUnknownZonesAreRefused() throws {
        let plan = try Fixture.plan(request)
        let issues = invalidIssues {
            _ = try Planning.adjust(plan, with: [.init(zone: "cheeks", depthMm: 0.6), .init(zone: "forehead", passes: 21), .init(zone: "neck", passes: 2)],
                                    request: self.request, protocol: Fixture.protocolData)
        }
        #expect(issues.map(\.path) == ["depth.cheeks", "passes.forehead", "adjustments[2].zone"])
    }
}

@Suite struct ChartRulesTests {
    let request = Fixture.request([("cheeks", "acne-scars")], maxDepth: 1.5)

    func zone(_ depth: Double, passes: Int = 4, seconds: Int = 20) -> ChartedZone {
        ChartedZone(zone: "cheeks", depthMm: depth, passes: passes, pattern: "crosshatch", secondsInZone: seconds)
    }

    @Test func aChartWithinThePlanGetsItsChannelDensity() throws {
        let plan = try Fixture.plan(request)
        let device = Fixture.protocolData.device("skinpen")!
        let charted = try ChartRules.checked([zone(1.5)], plan: plan, device: device, practitionerMaxDepthMm: 1.5, protocol: Fixture.protocolData)
        #expect(charted[0].estimatedChannelsPerCm2 == 280)
    }

    @Test func oneStepOverThePlanIsAllowedTwoAreNot() throws {
        var plan = try Fixture.plan(request)
        plan.zones[0].depthMm = 1.0
        let device = Fixture.protocolData.device("skinpen")!
        _ = try ChartRules.checked([zone(1.25)], plan: plan, device: device, practitionerMaxDepthMm: 2.5, protocol: Fixture.protocolData)
        let issues = invalidIssues { _ = try ChartRules.checked([zone(1.5)], plan: plan, device: device, practitionerMaxDepthMm: 2.5, protocol: Fixture.protocolData) }
        #expect(issues.map(\.path) == ["zones[0].depthMm"] && issues[0].problem.contains("deeper than the plan"))
    }

    @Test func theLicensedAndDeviceMaximumsAreNamed() throws {
        let plan = try Fixture.plan(Fixture.request([("cheeks", "acne-scars")], maxDepth: 2.5))
        let device = Fixture.protocolData.device("skinpen")!
        let licensed = invalidIssues { _ = try ChartRules.checked([zone(2.0)], plan: plan, device: device, practitionerMaxDepthMm: 1.75, protocol: Fixture.protocolData) }
        #expect(licensed.first?.problem.contains("licensed maximum of 1.75 mm") == true)
        let tooDeep = invalidIssues { _ = try ChartRules.checked([zone(2.75)], plan: plan, device: device, practitionerMaxDepthMm: nil, protocol: Fixture.protocolData) }
        #expect(tooDeep.first?.problem == "Needle depth 2.75 mm exceeds this device's maximum of 2.5 mm for zone 'Cheeks'")
    }

    @Test func numbingMustHaveItsMinimumOrAReason() {
        let applied = Date(timeIntervalSince1970: 1_000_000)
        #expect(ChartRules.numbingProblem(appliedAt: applied, now: applied.addingTimeInterval(29 * 60 + 59), minimumMinutes: 30, overrideReason: nil) != nil)
        #expect(ChartRules.numbingProblem(appliedAt: applied, now: applied.addingTimeInterval(30 * 60), minimumMinutes: 30, overrideReason: nil) == nil)
        #expect(ChartRules.numbingProblem(appliedAt: nil, now: applied, minimumMinutes: 30, overrideReason: nil) != nil)
        #expect(ChartRules.numbingProblem(appliedAt: nil, now: applied, minimumMinutes: 30, overrideReason: "0.25 mm only, patient declined cream") == nil)
    }
}
