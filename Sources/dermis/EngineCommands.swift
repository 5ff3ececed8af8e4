import ArgumentParser
import DermisCore
import Foundation

struct Screen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Screen an intake for microneedling: eligible, with precautions, deferred until a date, or not eligible.")

    @Option(help: "The intake as JSON (docs/CONTRACT.md), or - for standard input.")
    var intake: String

    @Option(help: "Screen as of this date (YYYY-MM-DD); default today.")
    var on: String?

    @Flag(help: "Print exactly the contract's screening result as JSON.")
    var json = false

    @OptionGroup var protocolOption: ProtocolOption

    func run() throws {
        let p = try protocolOption.load()
        let date: CalendarDate
        if let on {
            guard let parsed = CalendarDate(iso: on) else {
                throw InvalidInput(path: "--on", problem: "'\(on)' is not a real date (YYYY-MM-DD)")
            }
            date = parsed
        } else {
            date = try today()
        }
        let parsed = try decodeInput(Intake.self, from: try readInput(intake, flag: "--intake"))
        let result = try Screening.screen(parsed, on: date, protocol: p)
        print(json ? try ContractJSON.string(result) : result.report)
    }
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plan a treatment: depth per zone, passes, timing, series, downtime and aftercare.",
        discussion: "Give a request file (docs/CONTRACT.md), or the same from flags: --zone cheeks:acne-scars --skin thick --device skinpen --max-depth 1.5")

    @Option(help: "The plan request as JSON, or - for standard input.")
    var request: String?

    @Option(name: .customLong("zone"), help: "ZONE:INDICATION, repeatable (e.g. cheeks:acne-scars).")
    var zones: [String] = []

    @Option(help: "Skin thickness: thin or thick.")
    var skin: String?

    @Option(help: "Pen profile id (skinpen, dermapen).")
    var device: String?

    @Option(name: .customLong("max-depth"), help: "The practitioner's licensed maximum depth in mm.")
    var maxDepth: String?

    @Option(name: .customLong("fitzpatrick"), help: "Fitzpatrick skin type 1–6 (optional).")
    var fitzpatrick: Int?

    @Option(help: "First session date (YYYY-MM-DD); default today.")
    var start: String?

    @Flag(help: "Print exactly the contract's plan result as JSON.")
    var json = false

    @OptionGroup var protocolOption: ProtocolOption

    func run() throws {
        let p = try protocolOption.load()
        let planRequest: PlanRequest
        let fromFlags = !zones.isEmpty || skin != nil || device != nil || maxDepth != nil || start != nil || fitzpatrick != nil
        if let request {
            if fromFlags { throw InvalidInput(path: "--request", problem: "give either --request or the plan flags, not both") }
            planRequest = try decodeInput(PlanRequest.self, from: try readInput(request, flag: "--request"))
        } else {
            planRequest = try requestFromFlags()
        }
        do {
            let result = try Planning.plan(planRequest, today: try today(), protocol: p)
            print(json ? try ContractJSON.string(result) : result.report)
        } catch let invalid as InvalidInput where request == nil {
            throw InvalidInput(invalid.issues.map { FieldIssue(path: Self.flag(forPath: $0.path), problem: $0.problem) })
        }
    }

    private func requestFromFlags() throws -> PlanRequest {
        var issues: [FieldIssue] = []
        var pairs: [PlanRequest.ZoneIndication] = []
        for (i, text) in zones.enumerated() {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty {
                pairs.append(.init(zone: String(parts[0]), indication: String(parts[1])))
            } else {
                issues.append(FieldIssue(path: "--zone #\(i + 1)", problem: "'\(text)' is not ZONE:INDICATION (e.g. cheeks:acne-scars)"))
            }
        }
        if zones.isEmpty { issues.append(FieldIssue(path: "--zone", problem: "give at least one ZONE:INDICATION (or --request FILE)")) }
        if skin == nil { issues.append(FieldIssue(path: "--skin", problem: "is required: thin or thick")) }
        if device == nil { issues.append(FieldIssue(path: "--device", problem: "is required (e.g. skinpen)")) }
        let depth = maxDepth.flatMap { Double($0) }
        if maxDepth == nil {
            issues.append(FieldIssue(path: "--max-depth", problem: "is required: the practitioner's maximum depth in mm"))
        } else if depth == nil {
            issues.append(FieldIssue(path: "--max-depth", problem: "'\(maxDepth!)' is not a depth in mm"))
        }
        var startDate: CalendarDate?
        if let start {
            startDate = CalendarDate(iso: start)
            if startDate == nil { issues.append(FieldIssue(path: "--start", problem: "'\(start)' is not a real date (YYYY-MM-DD)")) }
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        var request = PlanRequest(zones: pairs, skin: .thick, fitzpatrickType: fitzpatrick, device: device!,
                                  practitionerMaxDepthMm: depth!, startDate: startDate)
        request.skin = skin!
        return request
    }

    /// Names the flag a request path came from: `zones[1].zone` → `--zone #2`.
    static func flag(forPath path: String) -> String {
        if path.hasPrefix("zones["), let close = path.firstIndex(of: "]"),
           let index = Int(path[path.index(path.startIndex, offsetBy: 6)..<close]) {
            return "--zone #\(index + 1)"
        }
        let flags = ["zones": "--zone", "skin": "--skin", "device": "--device", "practitionerMaxDepthMm": "--max-depth",
                     "startDate": "--start", "fitzpatrickType": "--fitzpatrick"]
        return flags[path] ?? path
    }
}

struct ProtocolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protocol",
        abstract: "Print the protocol in force (a starting point for a clinic's override file), after validating it.")

    @OptionGroup var protocolOption: ProtocolOption

    @Flag(help: "Only validate; print the version.")
    var check = false

    func run() throws {
        let p = try protocolOption.load()
        print(check ? "Protocol \(p.version) is valid." : try ContractJSON.string(p))
    }
}
