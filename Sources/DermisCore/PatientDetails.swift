import Foundation

/// What the registry holds about a patient, as entered; `validated(today:)` checks and normalises it.
public struct PatientDetails: Codable, Sendable, Hashable {
    public var givenName: String
    public var familyName: String
    public var dateOfBirth: String
    public var phone: String?
    public var email: String?
    public var fitzpatrickType: Int?

    public init(givenName: String, familyName: String, dateOfBirth: String, phone: String? = nil,
                email: String? = nil, fitzpatrickType: Int? = nil) {
        self.givenName = givenName
        self.familyName = familyName
        self.dateOfBirth = dateOfBirth
        self.phone = phone
        self.email = email
        self.fitzpatrickType = fitzpatrickType
    }

    /// The details ready to store: names trimmed, date parsed, phone in E.164, email lowercased.
    public struct Valid: Sendable, Hashable {
        public var givenName: String
        public var familyName: String
        public var dateOfBirth: CalendarDate
        public var phoneE164: String?
        public var email: String?
        public var fitzpatrickType: Int?
    }

    /// Checks every field and reports all problems at once, each with its field name.
    public func validated(today: CalendarDate) throws -> Valid {
        var issues = IssueCollector()
        let given = givenName.trimmingCharacters(in: .whitespacesAndNewlines)
        let family = familyName.trimmingCharacters(in: .whitespacesAndNewlines)
        for (field, value) in [("givenName", given), ("familyName", family)] {
            if value.isEmpty { issues.add(field, "is required") }
            else if value.count > 100 { issues.add(field, "must be at most 100 characters") }
            else if value.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) {
                issues.add(field, "must not contain control characters")
            }
        }
        let birth = CalendarDate(iso: dateOfBirth.trimmingCharacters(in: .whitespaces))
        if dateOfBirth.trimmingCharacters(in: .whitespaces).isEmpty {
            issues.add("dateOfBirth", "is required")
        } else if let birth {
            if birth > today { issues.add("dateOfBirth", "must not be in the future") }
            if birth.year < 1900 { issues.add("dateOfBirth", "must not be before 1900") }
        } else {
            issues.add("dateOfBirth", "'\(dateOfBirth)' is not a real date (YYYY-MM-DD)")
        }
        var phoneE164: String?
        if let phone, !phone.trimmingCharacters(in: .whitespaces).isEmpty {
            phoneE164 = Self.e164(phone)
            if phoneE164 == nil {
                issues.add("phone", "must be an international number with its country code, e.g. +44 7700 900123")
            }
        }
        var normalisedEmail: String?
        if let email, !email.trimmingCharacters(in: .whitespaces).isEmpty {
            normalisedEmail = email.trimmingCharacters(in: .whitespaces).lowercased()
            if !Self.isPlausibleEmail(normalisedEmail!) { issues.add("email", "'\(email)' is not an email address") }
        }
        if let type = fitzpatrickType, !Vocabulary.fitzpatrickTypes.contains(type) {
            issues.add("fitzpatrickType", "must be a whole number from 1 to 6, not \(type)")
        }
        try issues.throwIfAny()
        return Valid(givenName: given, familyName: family, dateOfBirth: birth!, phoneE164: phoneE164,
                     email: normalisedEmail, fitzpatrickType: fitzpatrickType)
    }

    /// `+44 (0)7700-900 123` style input to `+447700900123`; nil unless it is + (or 00), a country code and 7–15 digits.
    public static func e164(_ text: String) -> String? {
        var trimmed = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "(0)", with: "")
        if trimmed.hasPrefix("00") { trimmed = "+" + trimmed.dropFirst(2) }
        guard trimmed.hasPrefix("+") else { return nil }
        let allowed = CharacterSet(charactersIn: "0123456789 -.()")
        let rest = trimmed.dropFirst()
        guard rest.unicodeScalars.allSatisfy(allowed.contains) else { return nil }
        let digits = rest.filter(\.isASCII).filter(\.isNumber)
        guard (8...15).contains(digits.count), digits.first != "0" else { return nil }
        return "+" + digits
    }

    public static func isPlausibleEmail(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), text.count <= 254,
              !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !text.contains(where: { $0.isWhitespace }) else { return false }
        return true
    }
}

/// Text folded for search: case and accents ignored ("Zoë" and "ZOE" meet).
public func searchFolded(_ text: String) -> String {
    text.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: Locale(identifier: "en_US_POSIX"))
        .lowercased()
        .trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The sign-in password rules (docs/SECURITY.md R7/R8), after NIST SP 800-63B §5.1.1.2: 8–128 characters, at most 72
/// bytes (bcrypt's limit), no NUL, and not one of the commonly used passwords in `Resources/common-passwords.txt`.
/// No composition rules.
public enum PasswordPolicy {
    public static let minimumCharacters = 8
    public static let maximumCharacters = 128
    public static let maximumBytes = 72

    /// The problem with a new password, or nil when it is acceptable.
    public static func problem(with password: String) -> String? {
        if password.count < minimumCharacters { return "must be at least \(minimumCharacters) characters" }
        if password.count > maximumCharacters { return "must be at most \(maximumCharacters) characters" }
        if password.utf8.count > maximumBytes { return "must be at most \(maximumBytes) bytes (fewer accented or non-Latin characters)" }
        if password.contains("\u{0}") { return "must not contain a NUL character" }
        if isCommon(password) {
            return "is one of the most commonly used passwords (\(commonListSource)); choose another"
        }
        return nil
    }

    /// Whether the password, lower-cased and trimmed as the list is, appears in the common-password list.
    public static func isCommon(_ password: String) -> Bool {
        commonPasswords.contains(password.lowercased().trimmingCharacters(in: .whitespaces))
    }

    /// Where the list comes from, as shown to the person choosing a password.
    public static let commonListSource = "Royce Williams's list of 20,000 from breach data, as NIST SP 800-63B §5.1.1.2 asks"

    /// The shipped list; lines starting with "# " are its provenance. Read once.
    static let commonPasswords: Set<String> = {
        guard let url = Bundle.module.url(forResource: "common-passwords", withExtension: "txt"),
              let text = try? String(contentsOf: url, encoding: .utf8) else {
            fatalError("Resources/common-passwords.txt is missing from the DermisCore bundle")
        }
        return Set(text.split(separator: "\n").lazy.filter { !$0.hasPrefix("# ") }.map(String.init))
    }()
}
