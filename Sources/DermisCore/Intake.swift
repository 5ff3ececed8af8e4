import Foundation

/// What the patient reports at intake: the input to screening (docs/CONTRACT.md, "Intake").
public struct Intake: Codable, Sendable, Hashable {
    public var dateOfBirth: CalendarDate
    public var fitzpatrickType: Int
    public var pregnant: Bool
    public var nursing: Bool
    public var treatmentZones: [String]
    public var conditions: [Condition]
    public var medications: [Medication]
    public var allergies: [String]
    public var recentProcedures: [RecentProcedure]

    /// A condition with no zones applies to the whole body.
    public struct Condition: Codable, Sendable, Hashable {
        public var code: String
        public var zones: [String]?
        public init(code: String, zones: [String]? = nil) {
            self.code = code
            self.zones = zones
        }
    }

    /// Current when `current` is true or there is no `lastDose`.
    public struct Medication: Codable, Sendable, Hashable {
        public var code: String
        public var lastDose: CalendarDate?
        public var current: Bool?
        public init(code: String, lastDose: CalendarDate? = nil, current: Bool? = nil) {
            self.code = code
            self.lastDose = lastDose
            self.current = current
        }
        public var isCurrent: Bool { current == true || lastDose == nil }
    }

    /// A procedure with no zones applies to the whole body.
    public struct RecentProcedure: Codable, Sendable, Hashable {
        public var kind: String
        public var date: CalendarDate
        public var zones: [String]?
        public init(kind: String, date: CalendarDate, zones: [String]? = nil) {
            self.kind = kind
            self.date = date
            self.zones = zones
        }
    }

    public init(dateOfBirth: CalendarDate, fitzpatrickType: Int, pregnant: Bool = false, nursing: Bool = false,
                treatmentZones: [String], conditions: [Condition] = [], medications: [Medication] = [],
                allergies: [String] = [], recentProcedures: [RecentProcedure] = []) {
        self.dateOfBirth = dateOfBirth
        self.fitzpatrickType = fitzpatrickType
        self.pregnant = pregnant
        self.nursing = nursing
        self.treatmentZones = treatmentZones
        self.conditions = conditions
        self.medications = medications
        self.allergies = allergies
        self.recentProcedures = recentProcedures
    }

    enum CodingKeys: String, CodingKey {
        case dateOfBirth, fitzpatrickType, pregnant, nursing, treatmentZones, conditions, medications, allergies, recentProcedures
    }

    /// Pregnancy, nursing and the zones must be stated; the lists may be left out when empty.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dateOfBirth = try c.decode(CalendarDate.self, forKey: .dateOfBirth)
        fitzpatrickType = try c.decode(Int.self, forKey: .fitzpatrickType)
        pregnant = try c.decode(Bool.self, forKey: .pregnant)
        nursing = try c.decode(Bool.self, forKey: .nursing)
        treatmentZones = try c.decode([String].self, forKey: .treatmentZones)
        conditions = try c.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
        medications = try c.decodeIfPresent([Medication].self, forKey: .medications) ?? []
        allergies = try c.decodeIfPresent([String].self, forKey: .allergies) ?? []
        recentProcedures = try c.decodeIfPresent([RecentProcedure].self, forKey: .recentProcedures) ?? []
    }

    /// Every code known, every zone known, dates possible on `date`. Throws all problems at once.
    public func validate(on date: CalendarDate, zones validZones: [String]) throws {
        var issues = IssueCollector()
        if dateOfBirth > date { issues.add("dateOfBirth", "\(dateOfBirth) is after the screening date \(date)") }
        if dateOfBirth.year < 1900 { issues.add("dateOfBirth", "\(dateOfBirth) is before 1900") }
        if !Vocabulary.fitzpatrickTypes.contains(fitzpatrickType) {
            issues.add("fitzpatrickType", "must be a whole number from 1 to 6, not \(fitzpatrickType)")
        }
        if treatmentZones.isEmpty { issues.add("treatmentZones", "must name at least one zone") }
        for (i, zone) in treatmentZones.enumerated() {
            issues.requireKnown(zone, in: validZones, kind: "zone", at: "treatmentZones[\(i)]")
        }
        for (i, condition) in conditions.enumerated() {
            issues.requireKnown(condition.code, in: Vocabulary.conditions, kind: "condition code", at: "conditions[\(i)].code")
            for (j, zone) in (condition.zones ?? []).enumerated() {
                issues.requireKnown(zone, in: validZones, kind: "zone", at: "conditions[\(i)].zones[\(j)]")
            }
        }
        for (i, medication) in medications.enumerated() {
            issues.requireKnown(medication.code, in: Vocabulary.medications, kind: "medication code", at: "medications[\(i)].code")
        }
        for (i, allergy) in allergies.enumerated() {
            issues.requireKnown(allergy, in: Vocabulary.allergies, kind: "allergy code", at: "allergies[\(i)]")
        }
        for (i, procedure) in recentProcedures.enumerated() {
            issues.requireKnown(procedure.kind, in: Vocabulary.procedures, kind: "procedure kind", at: "recentProcedures[\(i)].kind")
            for (j, zone) in (procedure.zones ?? []).enumerated() {
                issues.requireKnown(zone, in: validZones, kind: "zone", at: "recentProcedures[\(i)].zones[\(j)]")
            }
        }
        try issues.throwIfAny()
    }
}
