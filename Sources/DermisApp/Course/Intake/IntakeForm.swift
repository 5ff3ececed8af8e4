import DermisCore
import Vapor

/// The intake form's fields as sent (repeated keys kept), turned into the contract's `Intake`.
struct IntakeForm {
    var pairs: [(String, String)]

    init(pairs: [(String, String)]) { self.pairs = pairs }

    /// Reads `application/x-www-form-urlencoded` keeping repeated keys (multi-selects, checkbox groups). A body that is
    /// not such a form (JSON, stray `%`, characters a form never sends) is refused with 400, never trusted to a parser
    /// that traps on it.
    init(req: Request) throws {
        guard let buffer = req.body.data else { self.init(pairs: []); return }
        self.init(pairs: try Self.pairs(String(decoding: Data(buffer: buffer), as: UTF8.self)))
    }

    static func pairs(_ text: String) throws -> [(String, String)] {
        try text.split(separator: "&", omittingEmptySubsequences: true).map { field in
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ part: Substring) throws -> String {
                guard let value = part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                    throw Abort(.badRequest, reason: "The form is not URL-encoded: '\(part.prefix(40))' cannot be read.")
                }
                return value
            }
            return (try decoded(parts[0]), parts.count > 1 ? try decoded(parts[1]) : "")
        }
    }

    func all(_ key: String) -> [String] { pairs.filter { $0.0 == key }.map(\.1).filter { !$0.isEmpty } }
    func one(_ key: String) -> String? { all(key).first }

    /// The intake, with every problem of the form reported by field.
    func intake(dateOfBirth: String) throws -> Intake {
        var issues: [FieldIssue] = []
        func yesNo(_ key: String) -> Bool {
            switch one(key) {
            case "yes": return true
            case "no": return false
            default:
                issues.append(FieldIssue(path: key, problem: "answer yes or no"))
                return false
            }
        }
        let pregnant = yesNo("pregnant")
        let nursing = yesNo("nursing")
        let type = one("fitzpatrickType").flatMap(Int.init)
        if type == nil { issues.append(FieldIssue(path: "fitzpatrickType", problem: "choose the Fitzpatrick type (1–6)")) }
        let birth = CalendarDate(iso: dateOfBirth)
        if birth == nil { issues.append(FieldIssue(path: "dateOfBirth", problem: "the patient's date of birth is missing")) }

        let conditions = all("condition").map { code in
            Intake.Condition(code: code, zones: all("conditionZones.\(code)").nilIfEmpty)
        }
        var medications: [Intake.Medication] = []
        for code in Vocabulary.medications {
            switch one("medication.\(code)") ?? "none" {
            case "current": medications.append(.init(code: code, current: true))
            case "stopped":
                if let date = one("lastDose.\(code)").flatMap(CalendarDate.init(iso:)) {
                    medications.append(.init(code: code, lastDose: date, current: false))
                } else {
                    issues.append(FieldIssue(path: "lastDose.\(code)", problem: "give the date of the last dose of \(code)"))
                }
            case "none": break
            default: issues.append(FieldIssue(path: "medication.\(code)", problem: "choose none, current or stopped"))
            }
        }
        var procedures: [Intake.RecentProcedure] = []
        for row in 0..<Self.procedureRows {
            guard let kind = one("procedureKind.\(row)") else { continue }
            guard let date = one("procedureDate.\(row)").flatMap(CalendarDate.init(iso:)) else {
                issues.append(FieldIssue(path: "procedureDate.\(row)", problem: "give the date of the \(kind)"))
                continue
            }
            procedures.append(.init(kind: kind, date: date, zones: all("procedureZones.\(row)").nilIfEmpty))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return Intake(dateOfBirth: birth!, fitzpatrickType: type!, pregnant: pregnant, nursing: nursing,
                      treatmentZones: all("zone"), conditions: conditions, medications: medications,
                      allergies: all("allergy"), recentProcedures: procedures)
    }

    static let procedureRows = 3

    /// The form filled from an earlier intake, so a new version starts from the last one.
    static func from(_ intake: Intake?) -> IntakeForm {
        guard let intake else { return IntakeForm(pairs: []) }
        var pairs: [(String, String)] = [("pregnant", intake.pregnant ? "yes" : "no"), ("nursing", intake.nursing ? "yes" : "no"),
                                         ("fitzpatrickType", String(intake.fitzpatrickType))]
        pairs += intake.treatmentZones.map { ("zone", $0) }
        for condition in intake.conditions {
            pairs.append(("condition", condition.code))
            pairs += (condition.zones ?? []).map { ("conditionZones.\(condition.code)", $0) }
        }
        for medication in intake.medications {
            pairs.append(("medication.\(medication.code)", medication.isCurrent ? "current" : "stopped"))
            if let dose = medication.lastDose { pairs.append(("lastDose.\(medication.code)", dose.description)) }
        }
        pairs += intake.allergies.map { ("allergy", $0) }
        for (row, procedure) in intake.recentProcedures.prefix(procedureRows).enumerated() {
            pairs.append(("procedureKind.\(row)", procedure.kind))
            pairs.append(("procedureDate.\(row)", procedure.date.description))
            pairs += (procedure.zones ?? []).map { ("procedureZones.\(row)", $0) }
        }
        return IntakeForm(pairs: pairs)
    }
}

extension Array {
    var nilIfEmpty: [Element]? { isEmpty ? nil : self }
}
