import Foundation
import Testing
@testable import DermisCore

/// What a patient is told to expect, worked out from the protocol data: the same minutes the planner books, the
/// downtime band of the planned depth at its edges, and the rules in patient words.
@Suite struct PatientGuideTests {
    let p = Fixture.protocolData

    @Test func theStepsAddUpToTheAppointmentThePlannerBooks() throws {
        for zones in [["cheeks"], ["cheeks", "forehead"], ["neck", "decolletage", "hands"]] {
            let guide = PatientGuide(zones: zones, plannedDepthsMm: [], protocol: p)
            #expect(guide.totalMinutes == (try Planning.appointmentMinutes(zones: zones, protocol: p)), "\(zones)")
            #expect(guide.steps.map(\.minutes).reduce(0, +) == guide.totalMinutes, "\(zones)")
            #expect(guide.steps.first { $0.kind == "numbing" }?.minutes == p.anaesthetic.minimumMinutes)
            #expect(guide.steps.allSatisfy { !$0.source.isEmpty })
        }
        // No areas chosen yet: the face.
        let face = PatientGuide(zones: [], plannedDepthsMm: [], protocol: p)
        #expect(face.areas.map(\.id) == p.zones.filter { $0.region == "face" }.map(\.id))
        // An unknown zone is left out, not guessed at.
        #expect(PatientGuide(zones: ["cheeks", "elbow"], plannedDepthsMm: [], protocol: p).areas.map(\.id) == ["cheeks"])
    }

    @Test(arguments: [(0.5, 2, 3), (0.75, 4, 5), (1.5, 4, 5), (1.75, 6, 7)])
    func theDowntimeIsThePlannedDepthsBand(depth: Double, min: Int, max: Int) {
        let guide = PatientGuide(zones: ["cheeks"], plannedDepthsMm: [0.25, depth], protocol: p)
        #expect(guide.downtime.plannedDepthMm == depth && guide.downtime.minDays == min && guide.downtime.maxDays == max)
        #expect(guide.aftercare.contains { $0.id == "expected-redness" && $0.toHour == max * 24 && $0.instruction.contains("\(min)–\(max) days") })
    }

    @Test func beforeAPlanTheWholeRangeIsGivenWithEveryBandsSource() {
        let guide = PatientGuide(zones: ["cheeks"], plannedDepthsMm: [], protocol: p)
        #expect(guide.downtime.plannedDepthMm == nil)
        #expect(guide.downtime.minDays == p.downtime.map(\.minDays).min() && guide.downtime.maxDays == p.downtime.map(\.maxDays).max())
        #expect(guide.downtime.sources == p.downtime.map(\.source))
    }

    @Test func everyRuleIsInPatientWordsAndAZoneBoundRuleOnlyForItsZones() {
        #expect(p.contraindications.allSatisfy { !($0.forPatients ?? "").isEmpty })
        let face = PatientGuide(zones: ["cheeks"], plannedDepthsMm: [], protocol: p)
        let neck = PatientGuide(zones: ["neck"], plannedDepthsMm: [], protocol: p)
        let all = { (g: PatientGuide) in (g.notEligible + g.deferrals + g.precautions).map(\.rule) }
        #expect(!all(face).contains("neck-fitzpatrick-clearance") && all(neck).contains("neck-fitzpatrick-clearance"))
        #expect(face.notEligible.map(\.rule) == p.contraindications.filter { $0.kind == .notEligible }.map(\.id))
        let filler = face.deferrals.first { $0.rule == "dermal-filler-recent" }
        #expect(filler?.waitMonths == 12 && filler?.waitDays == nil)
        #expect(face.deferrals.first { $0.rule == "resurfacing-recent-in-area" }?.waitDays == 28)
    }
}
