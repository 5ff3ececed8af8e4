import DermisCore
import Foundation
import Vapor

/// One FHIR resource as Dermis serves it: its body, its version and time for `meta`, the patient it belongs to (for
/// the audit log), and the values its search parameters match against.
struct FHIRResource: Sendable {
    let type: String
    let id: String
    let versionID: Int
    let lastUpdated: Date
    let patientID: UUID?
    /// The body without `resourceType`, `id` and `meta`, which `json` adds.
    let body: FHIRValue
    var index: [String: [SearchValue]]

    init(_ type: String, id: String, version: Int = 1, lastUpdated: Date, patient: UUID? = nil, body: FHIRValue,
         index: [String: [SearchValue]] = [:]) {
        self.type = type
        self.id = id
        self.versionID = version
        self.lastUpdated = lastUpdated
        self.patientID = patient
        self.body = body
        var index = index
        index["_id"] = [.token(system: nil, code: id)]
        index["_lastUpdated"] = [.date(.instant(lastUpdated))]
        if let patient {
            index["patient", default: []].append(.reference("Patient/\(patient.uuidString.lowercased())"))
            index["subject", default: []].append(.reference("Patient/\(patient.uuidString.lowercased())"))
        }
        self.index = index
    }

    var json: FHIRValue {
        guard case let .object(members) = body else { return body }
        let meta: FHIRValue = ["versionId": .string(String(versionID)), "lastUpdated": .instant(lastUpdated)]
        return .object([("resourceType", .string(type)), ("id", .string(id)), ("meta", meta)] + members)
    }

    var reference: String { "\(type)/\(id)" }
    var etag: String { "W/\"\(versionID)\"" }
}

/// What a search parameter of a resource can be matched against.
enum SearchValue: Sendable {
    case token(system: String?, code: String)
    /// `Type/id`.
    case reference(String)
    case date(DateRange)
    case string(String)
}

/// A stretch of time: a date covers its whole day, an instant is a point ([lo, hi) with hi just after lo).
struct DateRange: Sendable {
    let lo: Date
    let hi: Date

    static func instant(_ date: Date) -> DateRange { DateRange(lo: date, hi: date.addingTimeInterval(0.001)) }

    /// A calendar date as its day in UTC (FHIR dates carry no zone; UTC is the honest reading across clinics).
    static func day(_ date: CalendarDate) -> DateRange? { parse(date.description) }

    /// A FHIR date, partial date or dateTime as the time it covers.
    static func parse(_ text: String) -> DateRange? {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        if text.count == 4, let year = Int(text), let lo = utc.date(from: DateComponents(year: year, month: 1, day: 1)) {
            return DateRange(lo: lo, hi: utc.date(byAdding: .year, value: 1, to: lo)!)
        }
        if text.count == 7, parts.count == 2, let year = Int(parts[0]), let month = Int(parts[1]), (1...12).contains(month),
           let lo = utc.date(from: DateComponents(year: year, month: month, day: 1)) {
            return DateRange(lo: lo, hi: utc.date(byAdding: .month, value: 1, to: lo)!)
        }
        if text.count == 10, let date = CalendarDate(iso: text),
           let lo = utc.date(from: DateComponents(year: date.year, month: date.month, day: date.day)) {
            return DateRange(lo: lo, hi: utc.date(byAdding: .day, value: 1, to: lo)!)
        }
        if let instant = FHIRTime.dateTime(text) {
            // To the second, as written: 10:00:00 covers the whole second.
            let precision: TimeInterval = text.contains(".") ? 0.001 : (text.filter { $0 == ":" }.count >= 2 ? 1 : 60)
            return DateRange(lo: instant, hi: instant.addingTimeInterval(precision))
        }
        return nil
    }
}

/// The canonical names Dermis's own codes and identifiers live under. They name; they need not resolve.
enum FHIRNames {
    static let base = "https://dermis.dev/fhir"
    static let mrn = "\(base)/sid/mrn"
    static let procedure = "\(base)/CodeSystem/procedure"
    static let zone = "\(base)/CodeSystem/zone"
    static let indication = "\(base)/CodeSystem/indication"
    static let screeningOutcome = "\(base)/CodeSystem/screening-outcome"
    static let screeningRule = "\(base)/CodeSystem/screening-rule"
    static let outcomeScale = "\(base)/CodeSystem/outcome-scale"
    static let checkIn = "\(base)/CodeSystem/check-in"
    static let service = "\(base)/CodeSystem/service"
    static let staffRole = "\(base)/CodeSystem/staff-role"
    static let adverseEventType = "\(base)/CodeSystem/adverse-event-type"
    static let needleDepth = "\(base)/StructureDefinition/needle-depth"
    static let passCount = "\(base)/StructureDefinition/pass-count"
    static let treatmentZone = "\(base)/StructureDefinition/treatment-zone"
    static let intakeQuestionnaire = "\(base)/Questionnaire/intake"
    static let snomed = "http://snomed.info/sct"
    static let loinc = "http://loinc.org"
}

extension UUID {
    /// The lower-case form FHIR ids and references use.
    var fhirID: String { uuidString.lowercased() }
}
