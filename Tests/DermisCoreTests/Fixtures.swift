import Foundation
@testable import DermisCore

/// Small builders so each test states only what it is about.
enum Fixture {
    static let protocolData = ClinicalProtocol.bundled

    static func date(_ text: String) -> CalendarDate {
        guard let date = CalendarDate(iso: text) else { fatalError("bad fixture date \(text)") }
        return date
    }

    /// A healthy 36-year-old, type III, treating the given zones, nothing else reported.
    static func intake(zones: [String] = ["cheeks"], _ change: (inout Intake) -> Void = { _ in }) -> Intake {
        var intake = Intake(dateOfBirth: date("1990-04-02"), fitzpatrickType: 3, treatmentZones: zones)
        change(&intake)
        return intake
    }

    static func screen(_ intake: Intake, on day: String, protocol p: ClinicalProtocol = protocolData) throws -> ScreeningResult {
        try Screening.screen(intake, on: date(day), protocol: p)
    }

    static func request(_ pairs: [(String, String)] = [("cheeks", "acne-scars")], skin: SkinThickness = .thick,
                        device: String = "skinpen", maxDepth: Double = 2.5, start: String? = "2026-12-01") -> PlanRequest {
        PlanRequest(zones: pairs.map { .init(zone: $0.0, indication: $0.1) }, skin: skin, device: device,
                    practitionerMaxDepthMm: maxDepth, startDate: start.map(date))
    }

    static func plan(_ request: PlanRequest, protocol p: ClinicalProtocol = protocolData) throws -> PlanResult {
        try Planning.plan(request, today: date("2026-11-27"), protocol: p)
    }

    /// The bundled protocol with one change, as a clinic's override would make it.
    static func protocolWith(_ change: (inout ClinicalProtocol) -> Void) -> ClinicalProtocol {
        var p = protocolData
        change(&p)
        return p
    }

    /// Bundled protocol JSON edited as a dictionary, for tests of what a clinic's file may get wrong.
    static func protocolJSON(_ change: (inout [String: Any]) -> Void) throws -> Data {
        let data = try Data(contentsOf: ClinicalProtocol.bundledURL)
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        change(&object)
        return try JSONSerialization.data(withJSONObject: object)
    }
}

extension InvalidInput {
    var paths: [String] { issues.map(\.path) }
}

/// The issues an operation threw, or an empty list when it did not throw InvalidInput.
func invalidIssues(_ body: () throws -> Void) -> [FieldIssue] {
    do {
        try body()
        return []
    } catch let invalid as InvalidInput {
        return invalid.issues
    } catch {
        return [FieldIssue(path: "?", problem: "unexpected error \(error)")]
    }
}
