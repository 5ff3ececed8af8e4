import Foundation
import Testing
@testable import DermisCore

@Suite struct ScreeningTests {
    @Test func aHealthyPatientIsEligible() throws {
        let result = try Fixture.screen(Fixture.intake(), on: "2026-11-27")
        #expect(result.outcome == .eligible)
        #expect(result.reasons.isEmpty && result.precautions.isEmpty && result.until == nil)
        #expect(result.protocolVersion == Fixture.protocolData.version)
    }

    // MARK: Deferrals end on the first day they no longer apply

    @Test func isotretinoinDefersUntilSixCalendarMonthsAfterTheLastDose() throws {
        let intake = Fixture.intake { $0.medications = [.init(code: "isotretinoin", lastDose: Fixture.date("2026-06-01"))] }
        let dayBefore = try Fixture.screen(intake, on: "2026-11-30")
        #expect(dayBefore.outcome == .deferred)
        #expect(dayBefore.until == Fixture.date("2026-12-01"))
        #expect(dayBefore.reasons.map(\.rule) == ["isotretinoin-recent"])
        #expect(try Fixture.screen(intake, on: "2026-12-01").outcome == .eligible)
    }

    @Test func monthArithmeticClampsToTheEndOfAShortMonth() throws {
        let intake = Fixture.intake { $0.medications = [.init(code: "isotretinoin", lastDose: Fixture.date("2026-08-31"))] }
        #expect(try Fixture.screen(intake, on: "2027-02-27").until == Fixture.date("2027-02-28"))
        #expect(try Fixture.screen(intake, on: "2027-02-28").outcome == .eligible)
    }

    @Test func currentIsotretinoinDefersWithNoEndDate() throws {
        for medication in [Intake.Medication(code: "isotretinoin", current: true),
                           Intake.Medication(code: "isotretinoin"),
                           Intake.Medication(code: "isotretinoin", lastDose: Fixture.date("2026-01-01"), current: true)] {
            let result = try Fixture.screen(Fixture.intake { $0.medications = [medication] }, on: "2026-11-27")
            #expect(result.outcome == .deferred)
            #expect(result.until == nil)
            #expect(result.reasons.map(\.rule) == ["isotretinoin-current"])
        }
    }

    @Test(arguments: [
        ("botulinum-toxin", "2026-10-01", "2027-01-01", "botulinum-toxin-recent-in-area"),
        ("dermal-filler", "2026-01-15", "2027-01-15", "dermal-filler-recent"),
        ("radiation", "2026-09-10", "2026-12-10", "radiation-recent-in-area"),
        ("chemical-peel", "2026-11-20", "2026-12-18", "resurfacing-recent-in-area"),
        ("laser", "2026-11-20", "2026-12-18", "resurfacing-recent-in-area"),
    ])
    func recentProcedureDefersToTheDayItsIntervalEnds(kind: String, done: String, ends: String, rule: String) throws {
        let intake = Fixture.intake(zones: ["cheeks"]) { $0.recentProcedures = [.init(kind: kind, date: Fixture.date(done), zones: ["cheeks"])] }
        let dayBefore = try Fixture.screen(intake, on: Fixture.date(ends).adding(days: -1).description)
        #expect(dayBefore.outcome == .deferred)
        #expect(dayBefore.until == Fixture.date(ends))
        #expect(dayBefore.reasons.map(\.rule) == [rule])
        #expect(try Fixture.screen(intake, on: ends).outcome == .eligible)
    }

    @Test func toxinInTheForeheadDoesNotDeferANeckTreatment() throws {
        let toxin = Intake.RecentProcedure(kind: "botulinum-toxin", date: Fixture.date("2026-10-01"), zones: ["forehead"])
        #expect(try Fixture.screen(Fixture.intake(zones: ["neck"]) { $0.recentProcedures = [toxin] }, on: "2026-11-27").outcome == .eligible)
        #expect(try Fixture.screen(Fixture.intake(zones: ["neck", "forehead"]) { $0.recentProcedures = [toxin] }, on: "2026-11-27").outcome == .deferred)
    }

    @Test func aProcedureWithNoZonesCountsEverywhere() throws {
        let toxin = Intake.RecentProcedure(kind: "botulinum-toxin", date: Fixture.date("2026-10-01"))
        #expect(try Fixture.screen(Fixture.intake(zones: ["neck"]) { $0.recentProcedures = [toxin] }, on: "2026-11-27").outcome == .deferred)
    }

    @Test func fillerDefersWhateverTheZoneBecauseTheSourceDoesNotLimitItToTheArea() throws {
        let filler = Intake.RecentProcedure(kind: "dermal-filler", date: Fixture.date("2026-05-01"), zones: ["perioral"])
        let result = try Fixture.screen(Fixture.intake(zones: ["neck"]) { $0.recentProcedures = [filler] }, on: "2026-11-27")
        #expect(result.outcome == .deferred)
        #expect(result.until == Fixture.date("2027-05-01"))
    }

    @Test func theLatestOfOverlappingDeferralsWins() throws {
        let intake = Fixture.intake(zones: ["forehead"]) {
            $0.medications = [.init(code: "isotretinoin", lastDose: Fixture.date("2026-06-01"))]
            $0.recentProcedures = [.init(kind: "botulinum-toxin", date: Fixture.date("2026-10-01"), zones: ["forehead"])]
        }
        let result = try Fixture.screen(intake, on: "2026-11-27")
        #expect(result.until == Fixture.date("2027-01-01"))
        #expect(result.reasons.map(\.until) == [Fixture.date("2026-12-01"), Fixture.date("2027-01-01")])
        // The day after the first ends, the second still defers; the day it ends, nothing does.
        #expect(try Fixture.screen(intake, on: "2026-12-01").reasons.map(\.rule) == ["botulinum-toxin-recent-in-area"])
        #expect(try Fixture.screen(intake, on: "2026-12-31").outcome == .deferred)
        #expect(try Fixture.screen(intake, on: "2027-01-01").outcome == .eligible)
    }

    @Test func anOpenEndedDeferralRemovesTheEndDate() throws {
        let intake = Fixture.intake {
            $0.pregnant = true
            $0.medications = [.init(code: "isotretinoin", lastDose: Fixture.date("2026-06-01"))]
        }
        let result = try Fixture.screen(intake, on: "2026-11-27")
        #expect(result.outcome == .deferred)
        #expect(result.until == nil)
    }

    @Test func notEligibleOutranksADeferralAndDropsPrecautions() throws {
        let intake = Fixture.intake(zones: ["perioral"]) {
            $0.pregnant = true
            $0.allergies = ["stainless-steel"]
            $0.conditions = [.init(code: "herpes-simplex")]
        }
        let result = try Fixture.screen(intake, on: "2026-11-27")
        #expect(result.outcome == .notEligible)
        #expect(result.until == nil)
        #expect(Set(result.reasons.map(\.rule)) == ["metal-allergy", "pregnancy"])
        #expect(result.precautions.isEmpty)
    }

    @Test func aDeferredPatientKeepsThePrecautionsTheyWillNeedLater() throws {
        let intake = Fixture.intake(zones: ["perioral"]) {
            $0.nursing = true
            $0.conditions = [.init(code: "herpes-simplex")]
        }
        let result = try Fixture.screen(intake, on: "2026-11-27")
        #expect(result.outcome == .deferred)
        #expect(result.precautions.map(\.rule) == ["hsv-prophylaxis"])
    }

    // MARK: Zone-aware conditions

    @Test func aConditionOnlyCountsInTheTreatmentArea() throws {
        let eczemaOnNeck = [Intake.Condition(code: "eczema", zones: ["neck"])]
        #expect(try Fixture.screen(Fixture.intake(zones: ["cheeks"]) { $0.conditions = eczemaOnNeck }, on: "2026-11-27").outcome == .eligible)
        #expect(try Fixture.screen(Fixture.intake(zones: ["neck"]) { $0.conditions = eczemaOnNeck }, on: "2026-11-27").outcome == .notEligible)
    }

    @Test func aConditionWithNoZonesAppliesToTheWholeBody() throws {
        let result = try Fixture.screen(Fixture.intake(zones: ["hands"]) { $0.conditions = [.init(code: "active-skin-cancer")] }, on: "2026-11-27")
        #expect(result.outcome == .notEligible)
        #expect(result.reasons.map(\.rule) == ["active-skin-cancer-in-area"])
    }

    @Test func herpesHistoryIsAPrecautionOnlyWhenTreatingAroundTheMouth() throws {
        let hsv = [Intake.Condition(code: "herpes-simplex")]
        #expect(try Fixture.screen(Fixture.intake(zones: ["forehead"]) { $0.conditions = hsv }, on: "2026-11-27").outcome == .eligible)
        let perioral = try Fixture.screen(Fixture.intake(zones: ["forehead", "perioral"]) { $0.conditions = hsv }, on: "2026-11-27")
        #expect(perioral.outcome == .eligibleWithPrecautions)
        #expect(perioral.precautions.map(\.rule) == ["hsv-prophylaxis"])
    }

    @Test func aStoppedAnticoagulantDoesNotBar() throws {
        let stopped = Fixture.intake { $0.medications = [.init(code: "anticoagulant", lastDose: Fixture.date("2026-01-01"), current: false)] }
        #expect(try Fixture.screen(stopped, on: "2026-11-27").outcome == .eligible)
    }

    @Test func neckClearanceCoversFitzpatrickTwoToFourOnly() throws {
        for (type, expected) in [(1, ScreeningOutcome.eligibleWithPrecautions), (2, .eligible), (4, .eligible), (5, .eligibleWithPrecautions)] {
            let result = try Fixture.screen(Fixture.intake(zones: ["neck"]) { $0.fitzpatrickType = type }, on: "2026-11-27")
            #expect(result.outcome == expected, "type \(type)")
        }
        #expect(try Fixture.screen(Fixture.intake(zones: ["cheeks"]) { $0.fitzpatrickType = 6 }, on: "2026-11-27").outcome == .eligible)
    }

    // MARK: Every rule of the protocol fires, with its source

    /// One intake per rule that should make exactly that rule fire (treating the cheeks, perioral and neck).
    static let ruleCases: [(rule: String, outcome: ScreeningOutcome, change: @Sendable (inout Intake) -> Void)] = [
        ("active-skin-cancer-in-area", .notEligible, { $0.conditions = [.init(code: "active-skin-cancer", zones: ["cheeks"])] }),
        ("open-wound-in-area", .deferred, { $0.conditions = [.init(code: "open-wound", zones: ["cheeks"])] }),
        ("infection-in-area", .deferred, { $0.conditions = [.init(code: "active-infection", zones: ["cheeks"])] }),
        ("active-acne-in-area", .deferred, { $0.conditions = [.init(code: "active-acne", zones: ["cheeks"])] }),
        ("metal-allergy", .notEligible, { $0.allergies = ["stainless-steel"] }),
        ("anaesthetic-allergy", .notEligible, { $0.allergies = ["lidocaine"] }),
        ("bleeding-disorder", .notEligible, { $0.conditions = [.init(code: "bleeding-disorder")] }),
        ("pregnancy", .deferred, { $0.pregnant = true }),
        ("nursing", .deferred, { $0.nursing = true }),
        ("isotretinoin-current", .deferred, { $0.medications = [.init(code: "isotretinoin", current: true)] }),
        ("isotretinoin-recent", .deferred, { $0.medications = [.init(code: "isotretinoin", lastDose: Fixture.date("2026-09-01"))] }),
        ("anticoagulant", .notEligible, { $0.medications = [.init(code: "anticoagulant", current: true)] }),
        ("keloid-history", .notEligible, { $0.conditions = [.init(code: "keloid-history")] }),
        ("inflammatory-skin-disease-in-area", .notEligible, { $0.conditions = [.init(code: "rosacea", zones: ["cheeks"])] }),
        ("immunosuppression", .notEligible, { $0.conditions = [.init(code: "immunosuppression")] }),
        ("immunosuppressant", .notEligible, { $0.medications = [.init(code: "immunosuppressant")] }),
        ("radiation-recent-in-area", .deferred, { $0.recentProcedures = [.init(kind: "radiation", date: Fixture.date("2026-10-01"), zones: ["neck"])] }),
        ("dermal-filler-recent", .deferred, { $0.recentProcedures = [.init(kind: "dermal-filler", date: Fixture.date("2026-10-01"))] }),
        ("botulinum-toxin-recent-in-area", .deferred, { $0.recentProcedures = [.init(kind: "botulinum-toxin", date: Fixture.date("2026-10-01"), zones: ["perioral"])] }),
        ("resurfacing-recent-in-area", .deferred, { $0.recentProcedures = [.init(kind: "laser", date: Fixture.date("2026-11-01"), zones: ["cheeks"])] }),
        ("hsv-prophylaxis", .eligibleWithPrecautions, { $0.conditions = [.init(code: "herpes-simplex")] }),
        ("topical-retinoid", .eligibleWithPrecautions, { $0.medications = [.init(code: "topical-retinoid", current: true)] }),
        ("diabetes", .eligibleWithPrecautions, { $0.conditions = [.init(code: "diabetes")] }),
        ("neck-fitzpatrick-clearance", .eligibleWithPrecautions, { $0.fitzpatrickType = 6 }),
    ]

    @Test func everyProtocolRuleHasACase() {
        #expect(Set(Self.ruleCases.map(\.rule)) == Set(Fixture.protocolData.contraindications.map(\.id)))
    }

    @Test(arguments: ruleCases.indices)
    func eachRuleFiresAloneWithItsSource(index: Int) throws {
        let (rule, outcome, change) = Self.ruleCases[index]
        let result = try Fixture.screen(Fixture.intake(zones: ["cheeks", "perioral", "neck"], change), on: "2026-11-27")
        #expect(result.outcome == outcome, "\(rule)")
        let fired = result.reasons + result.precautions
        #expect(fired.map(\.rule) == [rule])
        let definition = try #require(Fixture.protocolData.contraindications.first { $0.id == rule })
        #expect(fired.first?.source == definition.source && !definition.source.isEmpty)
        #expect(fired.first?.message == definition.message)
    }

    // MARK: Bad input names the field

    @Test func unknownIdsAreRefusedWithTheValidOnes() {
        let intake = Fixture.intake(zones: ["cheek"]) {
            $0.conditions = [.init(code: "acne", zones: ["nosee"])]
            $0.medications = [.init(code: "accutane")]
            $0.allergies = ["latex"]
            $0.recentProcedures = [.init(kind: "botox", date: Fixture.date("2026-01-01"))]
        }
        let issues = invalidIssues { _ = try Fixture.screen(intake, on: "2026-11-27") }
        #expect(issues.map(\.path) == ["treatmentZones[0]", "conditions[0].code", "conditions[0].zones[0]", "medications[0].code",
                                       "allergies[0]", "recentProcedures[0].kind"])
        #expect(issues[0].problem.contains("unknown zone 'cheek'") && issues[0].problem.contains("cheeks"))
        #expect(issues[3].problem.contains("isotretinoin"))
    }

    @Test func impossibleAndMissingFieldsInJSONAreNamedByPath() {
        let cases: [(String, String, String)] = [
            (#"{"dateOfBirth":"1990-02-30","fitzpatrickType":3,"pregnant":false,"nursing":false,"treatmentZones":["cheeks"]}"#, "dateOfBirth", "real date"),
            (#"{"dateOfBirth":"1990-01-01","fitzpatrickType":3,"nursing":false,"treatmentZones":["cheeks"]}"#, "pregnant", "required"),
            (#"{"dateOfBirth":"1990-01-01","fitzpatrickType":"III","pregnant":false,"nursing":false,"treatmentZones":["cheeks"]}"#, "fitzpatrickType", "whole number"),
            (#"{"dateOfBirth":"1990-01-01","fitzpatrickType":3,"pregnant":false,"nursing":false,"treatmentZones":["cheeks"],"medications":[{"code":"isotretinoin","lastDose":"2026-13-01"}]}"#, "medications[0].lastDose", "real date"),
            (#"{"dateOfBirth":"1990-01-01","#, "", "not valid JSON"),
        ]
        for (json, path, words) in cases {
            let issues = invalidIssues { _ = try decodeInput(Intake.self, from: Data(json.utf8)) }
            #expect(issues.first?.path == path, "\(json)")
            #expect(issues.first?.problem.contains(words) == true, "\(issues)")
        }
    }

    @Test func implausibleValuesAreRefused() {
        let issues = invalidIssues {
            _ = try Fixture.screen(Fixture.intake(zones: []) { $0.fitzpatrickType = 7; $0.dateOfBirth = Fixture.date("2027-01-01") }, on: "2026-11-27")
        }
        #expect(issues.map(\.path) == ["dateOfBirth", "fitzpatrickType", "treatmentZones"])
    }

    @Test func theContractExampleScreensAsDocumented() throws {
        let json = #"""
        {"dateOfBirth": "1990-04-02", "fitzpatrickType": 3, "pregnant": false, "nursing": false,
         "treatmentZones": ["forehead", "cheeks"],
         "conditions": [{"code": "eczema", "zones": ["cheeks"]}, {"code": "herpes-simplex"}],
         "medications": [{"code": "isotretinoin", "lastDose": "2026-06-01"}, {"code": "anticoagulant", "current": true}],
         "allergies": ["lidocaine"],
         "recentProcedures": [{"kind": "botulinum-toxin", "date": "2026-10-01", "zones": ["forehead"]}]}
        """#
        let intake = try decodeInput(Intake.self, from: Data(json.utf8))
        let result = try Fixture.screen(intake, on: "2026-11-27")
        #expect(result.outcome == .notEligible)
        #expect(Set(result.reasons.map(\.rule)) == ["inflammatory-skin-disease-in-area", "isotretinoin-recent", "anticoagulant",
                                                    "anaesthetic-allergy", "botulinum-toxin-recent-in-area"])
    }
}

/// The public page's pre-screen: the same rules, only those its questions reach, at their boundaries.
@Suite struct PreScreenTests {
    let p = Fixture.protocolData
    let today = Fixture.date("2026-11-27")

    @Test func noAnswersMeanNoReason() throws {
        #expect(try PreScreen().screen(zones: [], on: today, protocol: p).outcome == .eligible)
    }

    @Test func pregnancyDefersWithNoEndDate() throws {
        let result = try PreScreen(pregnant: true).screen(zones: ["cheeks"], on: today, protocol: p)
        #expect(result.outcome == .deferred && result.until == nil && result.reasons.map(\.rule) == ["pregnancy"])
    }

    @Test func isotretinoinStoppedDefersToTheDaySixMonthsOn() throws {
        let stopped = PreScreen(isotretinoin: .stopped(lastDose: Fixture.date("2026-05-27")))
        #expect(try stopped.screen(zones: [], on: Fixture.date("2026-11-26"), protocol: p).until == Fixture.date("2026-11-27"))
        #expect(try stopped.screen(zones: [], on: Fixture.date("2026-11-27"), protocol: p).outcome == .eligible)
        #expect(try PreScreen(isotretinoin: .current).screen(zones: [], on: today, protocol: p).outcome == .deferred)
    }

    @Test func fillerAndToxinDeferByTheirIntervals() throws {
        let result = try PreScreen(fillerOn: Fixture.date("2026-05-01"), toxinOn: Fixture.date("2026-10-01")).screen(zones: ["forehead"], on: today, protocol: p)
        #expect(result.outcome == .deferred && result.until == Fixture.date("2027-05-01"))
        #expect(Set(result.reasons.map(\.rule)) == ["dermal-filler-recent", "botulinum-toxin-recent-in-area"])
    }

    @Test func skinCancerInTheAreaIsNotEligibleAndInfectionDefers() throws {
        #expect(try PreScreen(skinCancerInArea: true).screen(zones: ["cheeks"], on: today, protocol: p).outcome == .notEligible)
        let infection = try PreScreen(infectionInArea: true).screen(zones: ["cheeks"], on: today, protocol: p)
        #expect(infection.outcome == .deferred && infection.until == nil)
    }
}
