import Foundation
import Testing
@testable import DermisCore

@Suite struct ProtocolTests {
    @Test func theBundledProtocolHoldsEveryContractId() {
        let p = Fixture.protocolData
        #expect(Set(p.zones.map(\.id)) == Set(Vocabulary.zones))
        #expect(Set(p.indications.map(\.id)) == Set(Vocabulary.indications))
        #expect(Set(p.devices.map(\.id)) == ["skinpen", "dermapen"])
        #expect(!p.version.isEmpty)
    }

    @Test func everyFigureCarriesASource() {
        let p = Fixture.protocolData
        #expect(p.zones.allSatisfy { !$0.depthSource.isEmpty && $0.bodySite.system == "http://snomed.info/sct" && !$0.bodySite.code.isEmpty })
        #expect(p.indications.allSatisfy { !$0.series.source.isEmpty })
        #expect(p.contraindications.allSatisfy { !$0.source.isEmpty && !$0.message.isEmpty })
        #expect(p.aftercare.allSatisfy { !$0.source.isEmpty })
        #expect(p.downtime.allSatisfy { !$0.source.isEmpty })
        #expect(p.devices.allSatisfy { !$0.source.isEmpty })
    }

    @Test func theDeviceProfilesMatchTheirLabeling() throws {
        let skinpen = try #require(Fixture.protocolData.device("skinpen"))
        #expect(skinpen.maxDepthMm == 2.5 && skinpen.depthStepMm == 0.25 && skinpen.needles == 14)
        #expect((50...150).contains(skinpen.stampsPerSecond))
        let dermapen = try #require(Fixture.protocolData.device("dermapen"))
        #expect(dermapen.needles == 11 && dermapen.stampsPerSecond <= 90 && dermapen.minDepthMm == 0.25)
    }

    @Test func theBundledFileReloadsFromItsOwnExport() throws {
        let exported = try ContractJSON.encode(Fixture.protocolData)
        let reloaded = try ClinicalProtocol.load(from: exported)
        #expect(reloaded.version == Fixture.protocolData.version)
        #expect(reloaded.contraindications.count == Fixture.protocolData.contraindications.count)
    }

    @Test func anOverrideMissingAContractZoneIsRefused() throws {
        let data = try Fixture.protocolJSON { object in
            var zones = object["zones"] as! [[String: Any]]
            zones.removeAll { $0["id"] as? String == "neck" }
            object["zones"] = zones
        }
        let issues = invalidIssues { _ = try ClinicalProtocol.load(from: data) }
        #expect(issues.contains { $0.path == "zones" && $0.problem.contains("'neck' is missing") })
    }

    @Test func anOverrideWithAnInvertedRangeIsRefusedAtThatField() throws {
        let data = try Fixture.protocolJSON { object in
            var zones = object["zones"] as! [[String: Any]]
            var depth = zones[0]["depthMm"] as! [String: Any]
            depth["thin"] = ["min": 0.75, "max": 0.5]
            zones[0]["depthMm"] = depth
            object["zones"] = zones
        }
        let issues = invalidIssues { _ = try ClinicalProtocol.load(from: data) }
        #expect(issues.map(\.path) == ["zones[0].depthMm.thin"])
    }

    @Test func anOverrideDeeperThanTwoAndAHalfIsRefused() throws {
        let data = try Fixture.protocolJSON { $0["maxDepthMm"] = 3.0 }
        #expect(invalidIssues { _ = try ClinicalProtocol.load(from: data) }.map(\.path) == ["maxDepthMm"])
    }

    @Test func anOverrideRuleWithAnUnknownCodeIsRefused() throws {
        let data = try Fixture.protocolJSON { object in
            var rules = object["contraindications"] as! [[String: Any]]
            rules[0]["trigger"] = ["type": "condition", "codes": ["skin-cancer"]]
            object["contraindications"] = rules
        }
        let issues = invalidIssues { _ = try ClinicalProtocol.load(from: data) }
        #expect(issues.map(\.path) == ["contraindications[0].trigger.codes[0]"])
        #expect(issues[0].problem.contains("active-skin-cancer"))
    }

    @Test func anOverrideWithAWrongTypeOrMissingFieldIsNamed() throws {
        let wrongType = try Fixture.protocolJSON { object in
            var devices = object["devices"] as! [[String: Any]]
            devices[1]["needles"] = "eleven"
            object["devices"] = devices
        }
        #expect(invalidIssues { _ = try ClinicalProtocol.load(from: wrongType) }.map(\.path) == ["devices[1].needles"])
        let missing = try Fixture.protocolJSON { $0.removeValue(forKey: "anaesthetic") }
        #expect(invalidIssues { _ = try ClinicalProtocol.load(from: missing) }.map(\.path) == ["anaesthetic"])
        #expect(invalidIssues { _ = try ClinicalProtocol.load(from: Data("{".utf8)) }.first?.problem.contains("not valid JSON") == true)
    }

    @Test func aStoppedMedicationRuleNeedsADuration() throws {
        let data = try Fixture.protocolJSON { object in
            var rules = object["contraindications"] as! [[String: Any]]
            let index = rules.firstIndex { $0["id"] as? String == "isotretinoin-recent" }!
            rules[index].removeValue(forKey: "deferFor")
            object["contraindications"] = rules
        }
        #expect(invalidIssues { _ = try ClinicalProtocol.load(from: data) }.map(\.path).contains { $0.hasSuffix(".deferFor") })
    }
}
