import DermisCore

// Pieces every form page shares: choices, error lines beside their fields, and the limits on free text.

struct Option: Encodable {
    let id: String
    let name: String
    let selected: Bool

    /// Every value of an outcome scale, labelled from its definition.
    static func levels(of scale: ClinicalProtocol.OutcomeScale, selected: Int? = nil) -> [Option] {
        (scale.min...scale.max).map { Option(id: String($0), name: scale.label(for: $0) ?? String($0), selected: $0 == selected) }
    }
}

/// How long free text may be, so nothing unbounded reaches the database.
enum TextLimits {
    static let short = 100
    static let reason = 1000
    static let notes = 5000
    /// A consent text a patient reads on a tablet: a few pages at most.
    static let consentText = 20000

    /// The problem with `text` in `field`, if it is longer than `limit` characters.
    static func issue(_ text: String?, _ field: String, max limit: Int) -> FieldIssue? {
        guard let text, text.count > limit else { return nil }
        return FieldIssue(path: field, problem: "must be at most \(limit) characters (it has \(text.count))")
    }
}

struct ErrorLine: Encodable {
    let field: String
    let message: String

    /// One line per problem, each saying its field.
    static func list(_ invalid: InvalidInput) -> [ErrorLine] {
        invalid.issues.map { ErrorLine(field: $0.path, message: $0.description) }
    }
}

