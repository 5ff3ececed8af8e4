import Foundation
import Vapor

/// Every sentence the patient's own pages show, from one catalogue (`Resources/Messages/patient.en.json`), so a clinic
/// can translate them: `DERMIS_PATIENT_TEXT_FILE` names a JSON file of the same keys whose values replace the English
/// ones (keys it leaves out stay English). A key the catalogue does not have, or a sentence that drops or invents a
/// `{placeholder}`, stops the server at start with the key named — a translation never silently loses a date or a link. Clinical facts (times, depths, rules, sources) are not
/// here: they come from the protocol data, and the catalogue only words the sentences around them.
struct PatientText: Sendable {
    let strings: [String: String]
    /// The same sentences keyed for templates, `.` as `_` (`signIn.title` → `signIn_title`), built once.
    let templateKeys: [String: String]

    init(strings: [String: String]) {
        self.strings = strings
        self.templateKeys = Dictionary(strings.map { ($0.key.replacingOccurrences(of: ".", with: "_"), $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    static func load(overrides path: String?) throws -> PatientText {
        let english = try read(resourcesPath("Messages") + "patient.en.json")
        guard let path else { return PatientText(strings: english) }
        let theirs = try read(path)
        var merged = english
        for (key, value) in theirs {
            guard let original = english[key] else {
                throw Problem(description: "\(path): '\(key)' is not a key of the patient text catalogue")
            }
            let want = placeholders(original), got = placeholders(value)
            guard want == got else {
                throw Problem(description: "\(path): '\(key)' must use the placeholders \(want.sorted().map { "{\($0)}" }.joined(separator: ", ")) "
                              + "(it has \(got.sorted().map { "{\($0)}" }.joined(separator: ", ")))")
            }
            merged[key] = value
        }
        return PatientText(strings: merged)
    }

    private static func read(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else { throw Problem(description: "\(path): cannot be read") }
        do {
            return try JSONDecoder().decode([String: String].self, from: data)
        } catch {
            throw Problem(description: "\(path): not a JSON object of strings (\(error.localizedDescription))")
        }
    }

    static func placeholders(_ text: String) -> Set<String> {
        var found: Set<String> = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            found.insert(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return found
    }

    /// The sentence for `key` with its placeholders filled (one pass: a value is never read as a placeholder).
    func callAsFunction(_ key: String, _ values: [String: String] = [:]) -> String {
        guard let text = strings[key] else { return key }
        guard !values.isEmpty else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            out += values[name] ?? "{\(name)}"
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}
