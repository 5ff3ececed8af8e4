import Foundation

/// The clinic's knowledge as data: zones, indications, contraindication rules, timings, aftercare,
/// downtime and device profiles, each figure with its source. Loaded from `protocol.json`.
public struct ClinicalProtocol: Codable, Sendable {
    public var version: String
    public var title: String
    public var notes: String?
    /// No plan ever needles deeper than this, whatever the chart or device allow.
    public var maxDepthMm: Double
    public var maxDepthSource: String
    public var zones: [Zone]
    public var indications: [Indication]
    public var zoneSeries: [ZoneSeries]
    public var contraindications: [ContraindicationRule]
    public var anaesthetic: Anaesthetic
    public var procedure: ProcedureTiming
    public var downtime: [DowntimeBand]
    public var aftercare: [AftercareRule]
    public var devices: [DeviceProfile]
    public var deviceNotes: [ZoneNote]
    public var followUp: FollowUp
    public var outcomeScales: [OutcomeScale]

    public struct Coding: Codable, Sendable, Hashable {
        public var system: String
        public var code: String
        public var display: String
    }

    /// A closed range of a measured value (depth in mm, channels per cm²).
    public struct ValueRange: Codable, Sendable, Hashable {
        public var min: Double
        public var max: Double
    }

    public typealias DepthRange = ValueRange

    /// A depth range for each skin thickness.
    public struct DepthByThickness: Codable, Sendable, Hashable {
        public var thin: DepthRange
        public var thick: DepthRange

        public subscript(skin: SkinThickness) -> DepthRange {
            switch skin {
            case .thin: thin
            case .thick: thick
            }
        }
    }

    public struct Zone: Codable, Sendable {
        public var id: String
        public var displayName: String
        /// `face` or `body`: where the zone is drawn.
        public var region: String
        public var bodySite: Coding
        public var defaultAreaCm2: Double
        public var areaConservativeDefault: Bool?
        public var depthMm: DepthByThickness
        public var depthConservativeDefault: Bool?
        public var depthSource: String
    }

    public struct Series: Codable, Sendable, Hashable {
        public var sessions: Int
        public var minIntervalDays: Int
        public var conservativeDefault: Bool?
        public var source: String
    }

    /// An indication's own depth range, for the listed zones (all zones when `zones` is absent).
    public struct DepthRule: Codable, Sendable {
        public var zones: [String]?
        public var depthMm: DepthByThickness
        public var conservativeDefault: Bool?
        public var source: String
    }

    public struct Indication: Codable, Sendable {
        public var id: String
        public var displayName: String
        /// The zones this indication can be planned for; all zones when absent.
        public var zones: [String]?
        public var series: Series
        public var depthRules: [DepthRule]
        /// What the practitioner should know when planning this indication.
        public var note: Note?
    }

    public struct Note: Codable, Sendable {
        public var message: String
        public var source: String
    }

    /// A series that belongs to an area rather than an indication (the neck: 4 monthly sessions).
    public struct ZoneSeries: Codable, Sendable {
        public var zones: [String]
        public var sessions: Int
        public var minIntervalDays: Int
        public var source: String
    }

    public enum RuleKind: String, Codable, Sendable {
        case notEligible = "not-eligible"
        case deferral
        case precaution
    }

    /// A duration in calendar months or days.
    public struct Duration: Codable, Sendable, Hashable {
        public var months: Int?
        public var days: Int?

        public func after(_ date: CalendarDate) -> CalendarDate {
            date.adding(months: months ?? 0).adding(days: days ?? 0)
        }
    }

    public enum TriggerType: String, Codable, Sendable {
        case condition, medication, allergy, procedure, pregnant, nursing, fitzpatrick
    }

    public enum MedicationStatus: String, Codable, Sendable {
        /// Taking it now (`current` true, or no last dose recorded).
        case current
        /// Stopped, with a last dose on record.
        case stopped
    }

    public struct Trigger: Codable, Sendable {
        public var type: TriggerType
        public var codes: [String]?
        public var status: MedicationStatus?
        /// For `fitzpatrick`: the rule fires for types outside this list.
        public var outside: [Int]?
    }

    public struct ContraindicationRule: Codable, Sendable {
        public var id: String
        public var kind: RuleKind
        /// Fires only when the finding's zones overlap the treatment zones ("in the area").
        public var inTreatmentArea: Bool?
        /// Fires only when one of these zones is being treated.
        public var zones: [String]?
        public var trigger: Trigger
        /// For a deferral: how long after the finding's date; absent means open-ended.
        public var deferFor: Duration?
        /// The finding in a patient's words ("Taking blood thinners"), for the patient's own pages; the practitioner's
        /// `message` when absent.
        public var forPatients: String?
        public var message: String
        public var rationale: String?
        public var conservativeDefault: Bool?
        public var source: String
    }

    public struct Anaesthetic: Codable, Sendable {
        public var minimumMinutes: Int
        public var source: String
    }

    public struct ProcedureTiming: Codable, Sendable {
        public var defaultPasses: Int
        /// The most passes a plan or chart may record.
        public var maximumPasses: Int
        public var defaultPattern: String
        public var passesConservativeDefault: Bool?
        public var passesSource: String
        public var targetChannelsPerCm2: ValueRange
        public var densitySource: String
        /// Skin area one pass covers per minute: procedure time grows with area × passes.
        public var coverageCm2PerMinute: Double
        public var preparationMinutes: Int
        public var timingConservativeDefault: Bool?
        public var timingSource: String
        public var checkInMinutes: Int
        public var closingMinutes: Int
        public var appointmentSource: String
        /// How much deeper than planned a charted zone may go (absent: not at all).
        public var chartToleranceMm: Double?
        public var chartToleranceSource: String?
    }

    /// Downtime for depths up to and including `maxDepthMm` (and above the previous band).
    public struct DowntimeBand: Codable, Sendable, Hashable {
        public var maxDepthMm: Double
        public var minDays: Int
        public var maxDays: Int
        public var source: String
    }

    public struct AftercareRule: Codable, Sendable {
        public var id: String
        public var fromHour: Int
        public var toHour: Int?
        /// Ends when the expected downtime for the depth used ends; `{minDays}`/`{maxDays}` fill the text.
        public var downtimeEnd: Bool?
        public var instruction: String
        public var source: String
    }

    public struct DeviceProfile: Codable, Sendable {
        public var id: String
        public var displayName: String
        public var minDepthMm: Double
        public var maxDepthMm: Double
        public var depthStepMm: Double
        public var needles: Int
        public var stampsPerSecond: Double
        public var stampRateConservativeDefault: Bool?
        public var stepConservativeDefault: Bool?
        /// Depths above this were not evaluated by the maker; planning notes it.
        public var evaluatedMaxDepthMm: Double?
        public var source: String
    }

    /// After the session: how long the patient's link lasts, and the check-in rules that flag an adverse event.
    public struct FollowUp: Codable, Sendable {
        public var linkValidDays: Int
        public var linkConservativeDefault: Bool?
        public var linkSource: String
        public var checkInsPerLinkPerDay: Int
        /// When the patient is invited to check in, reminded, and asked to rate the result; absent: no invitations.
        public var invitations: Invitations?
        /// The outcome scales a check-in's redness and pain are reported on.
        public var rednessScale: String
        public var painScale: String
        public var flags: [CheckInFlagRule]
        /// The kinds of adverse event a practitioner records (a flag names the one it opens).
        public var eventTypes: [EventType]
        public var infectionSigns: [InfectionSign]
    }

    /// The messages that follow a signed session: check-in invitations on `checkInDays` (days after the session, at
    /// `localHour` in the clinic's zone), a reminder `overdueAfterDays` after an invitation nobody answered, and at the
    /// end of a series an invitation to rate the result (GAIS) on `rateResultDay`.
    public struct Invitations: Codable, Sendable, Equatable {
        public var checkInDays: [Int]
        public var checkInDaysSource: String
        public var localHour: Int
        public var overdueAfterDays: Int
        public var rateResultDay: Int
        public var conservativeDefault: Bool?
        public var source: String
    }

    public struct EventType: Codable, Sendable, Hashable {
        public var id: String
        public var label: String
    }

    /// A check-in rule; `kind` names the logic (`redness-beyond-downtime`, `infection-sign`, `pain-rising`), the rest is data.
    public struct CheckInFlagRule: Codable, Sendable {
        public var id: String
        public var kind: String
        /// The adverse-event type a flag opens.
        public var eventType: String
        /// Redness at or above this grade counts (redness rule).
        public var minimumGrade: Int?
        /// Only from the day after this one (pain rule).
        public var afterDay: Int?
        /// `mild`, `moderate` or `severe`: the adverse event it opens starts at this severity.
        public var severity: String
        public var conservativeDefault: Bool?
        /// `{grade}`, `{day}`, `{maxDays}`, `{depth}`, `{signs}`, `{pain}`, `{previous}` are filled in.
        public var message: String
        public var source: String
    }

    public struct InfectionSign: Codable, Sendable, Hashable {
        public var id: String
        public var label: String
    }

    /// A standard outcome scale; its definition is data so a clinic can add or reword one.
    public struct OutcomeScale: Codable, Sendable {
        public var id: String
        public var name: String
        public var min: Int
        public var max: Int
        /// `lower` or `higher`: which way is better.
        public var better: String
        /// `practitioner` and/or `patient`.
        public var raters: [String]
        /// The indications it suits; absent means every indication.
        public var indications: [String]?
        /// A rating of the change since before treatment (GAIS): its last value is the series' result, not a difference.
        public var comparesWithBaseline: Bool?
        public var coding: Coding?
        public var levels: [Level]
        public var conservativeDefault: Bool?
        public var source: String

        public struct Level: Codable, Sendable, Hashable {
            public var value: Int
            public var label: String
            public var description: String?
        }

        public func label(for value: Int) -> String? { levels.first { $0.value == value }?.label }
    }

    public struct ZoneNote: Codable, Sendable {
        public var id: String
        public var zones: [String]
        public var message: String
        public var source: String
    }
}

extension ClinicalProtocol {
    /// Needles run 0.5–2.5 mm (practice description, docs/PROTOCOL.md): no protocol, device or person goes deeper.
    public static let deepestNeedleMm = 2.5

    public func zone(_ id: String) -> Zone? { zones.first { $0.id == id } }
    public func indication(_ id: String) -> Indication? { indications.first { $0.id == id } }
    public func device(_ id: String) -> DeviceProfile? { devices.first { $0.id == id } }
    public func outcomeScale(_ id: String) -> OutcomeScale? { outcomeScales.first { $0.id == id } }
}
