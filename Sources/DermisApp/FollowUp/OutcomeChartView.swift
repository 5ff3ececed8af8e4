import DermisCore
import Foundation

/// One outcome scale across the patient's signed sessions, ready for the course page's server-rendered SVG.
/// Practitioner and patient ratings differ by line style and marker shape as well as colour, every point carries
/// its value as text, and a table repeats the figures.
struct OutcomeChartView: Encodable {
    struct Point: Encodable {
        let x: String
        let y: String
        let value: Int
        let label: String
        let rater: String
        let session: Int
    }

    struct Tick: Encodable {
        let y: String
        let label: String
    }

    struct Column: Encodable {
        let x: String
        let date: String
        let depth: String
        let practitioner: String
        let patient: String
    }

    let id: String
    let name: String
    let better: String
    let source: String
    let width: Int
    let height: Int
    let left: String
    let right: String
    let top: String
    let bottom: String
    let ticks: [Tick]
    let columns: [Column]
    let points: [Point]
    let practitionerLine: String
    let patientLine: String

    static func charts(_ sessions: [TreatmentSession], scores: [OutcomeScore], protocol p: ClinicalProtocol) -> [OutcomeChartView] {
        let index = Dictionary(sessions.enumerated().map { ($1.chartID, $0) }, uniquingKeysWith: { a, _ in a })
        return p.outcomeScales.compactMap { scale in
            let mine = scores.filter { $0.scale == scale.id && index[$0.chartID] != nil }
            guard !mine.isEmpty else { return nil }
            let chart = OutcomeChart(scale: scale, sessions: sessions.count,
                                     scores: mine.map { (session: index[$0.chartID]!, value: $0.value, rater: $0.rater) })
            func f(_ v: Double) -> String { String(format: "%.1f", v) }
            func value(_ session: Int, _ rater: String) -> String {
                mine.first { index[$0.chartID] == session && $0.rater == rater }.map { String($0.value) } ?? "—"
            }
            return OutcomeChartView(
                id: scale.id, name: scale.name, better: scale.better == "lower" ? "lower is better" : "higher is better", source: scale.source,
                width: Int(OutcomeChart.width), height: Int(OutcomeChart.height),
                left: f(OutcomeChart.left), right: f(OutcomeChart.width - OutcomeChart.right),
                top: f(OutcomeChart.top), bottom: f(OutcomeChart.height - OutcomeChart.bottom),
                ticks: chart.ticks.map { Tick(y: f($0.y), label: $0.label) },
                columns: sessions.enumerated().map { i, session in
                    Column(x: f(chart.sessionX[i]), date: AuditLog.isoDay(session.createdAt),
                           depth: session.zones.map(\.depthMm).max().map { formatMillimetres($0) + " mm" } ?? "",
                           practitioner: value(i, "practitioner"), patient: value(i, "patient"))
                },
                points: chart.points.map {
                    Point(x: f($0.x), y: f($0.y), value: $0.value, label: scale.label(for: $0.value) ?? String($0.value), rater: $0.rater, session: $0.session + 1)
                },
                practitionerLine: chart.polyline(for: "practitioner"), patientLine: chart.polyline(for: "patient"))
        }
    }
}
