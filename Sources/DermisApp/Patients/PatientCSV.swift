import DermisCore
import Fluent
import Foundation
import SQLKit
import Vapor

/// Patients in from another system's CSV export, and the registry and appointments out as CSV (RFC 4180).
///
/// An import maps the file's columns (by the common header names, or `column.<field>=<header>`), reads dates in the
/// file's own format, and reports per row: `create` (or `created`), `matched` — the same name and date of birth, or
/// the same id in the source system, already in the registry or earlier in the file — or `refused`, with each reason.
/// A dry run writes nothing. A real run stores every row it can in one transaction; run again, it creates nothing twice.
struct PatientCSVController: RouteCollection {
    static let maxImport: ByteCount = "20mb"

    func boot(routes: any RoutesBuilder) throws {
        let api = routes.grouped("api", "v1")
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        api.on(.POST, "patients", "import", body: .collect(maxSize: Self.maxImport), use: importPatients).access(rule)
        api.get("patients.csv", use: exportPatients).access(rule)
        api.get("appointments.csv", use: exportAppointments).access(AccessRule.staff(AccessRule.anyStaff, audits: "Appointment"))
    }

    // MARK: Import

    enum Field: String, CaseIterable, Sendable {
        case givenName, familyName, dateOfBirth, phone, email, sourceID

        /// Header names other systems use, compared without case, spaces, dashes or underscores.
        var aliases: [String] {
            switch self {
            case .givenName: ["givenname", "firstname", "given", "first", "forename", "forenames"]
            case .familyName: ["familyname", "lastname", "surname", "family", "last"]
            case .dateOfBirth: ["dateofbirth", "dob", "birthdate", "birthday", "born"]
            case .phone: ["phone", "mobile", "telephone", "phonenumber", "mobilephone", "cell", "tel"]
            case .email: ["email", "emailaddress", "mail"]
            case .sourceID: ["id", "patientid", "externalid", "recordnumber", "mrn", "chartnumber", "clientid"]
            }
        }

        var required: Bool { [.givenName, .familyName, .dateOfBirth].contains(self) }
    }

    static func folded(_ header: String) -> String {
        header.lowercased().filter { $0.isLetter || $0.isNumber }
    }

    /// The file's date formats a clinic meets.
    enum DateFormat: String, CaseIterable {
        case iso = "YYYY-MM-DD", dayFirst = "DD/MM/YYYY", monthFirst = "MM/DD/YYYY", dotted = "DD.MM.YYYY"

        func read(_ text: String) -> CalendarDate? {
            let t = text.trimmingCharacters(in: .whitespaces)
            switch self {
            case .iso: return CalendarDate(iso: t)
            case .dayFirst, .monthFirst, .dotted:
                let parts = t.split(separator: self == .dotted ? "." : "/").map { Int($0) }
                guard parts.count == 3, let a = parts[0], let b = parts[1], let year = parts[2], year >= 1000, parts.allSatisfy({ $0 != nil }) else { return nil }
                return self == .monthFirst ? CalendarDate(year: year, month: a, day: b) : CalendarDate(year: year, month: b, day: a)
            }
        }
    }

    struct Reason: Content {
        let field: String
        let problem: String
    }

    struct RowResult: Content {
        let line: Int
        /// `create` (dry run), `created`, `matched` or `refused`.
        let outcome: String
        /// How a match was made: `source-id`, `name-and-birth-date` or `earlier-row`.
        let matchedBy: String?
        let patientID: UUID?
        let mrn: String?
        let reasons: [Reason]
    }

    struct Report: Content {
        let dryRun: Bool
        let columns: [String: String]
        let dateFormat: String
        let source: String?
        let rows: Int
        let created: Int
        let matched: Int
        let refused: Int
        let results: [RowResult]
    }

    func importPatients(req: Request) async throws -> Report {
        let staff = try req.staff()
        guard let type = req.headers.contentType, type.type == "text", type.subType == "csv" else {
            throw Abort(.unsupportedMediaType, reason: "Send the file as text/csv.")
        }
        let dryRun = try Self.flag(req, "dryRun", default: true)
        let formatText = (try? req.query.get(String.self, at: "dateFormat")) ?? DateFormat.iso.rawValue
        guard let format = DateFormat(rawValue: formatText) else {
            throw InvalidInput(path: "dateFormat", problem: "must be one of \(DateFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let source = (try? req.query.get(String.self, at: "source"))?.trimmingCharacters(in: .whitespaces)
        if let source, source.isEmpty || source.count > 200 || source.contains(where: \.isWhitespace) {
            throw InvalidInput(path: "source", problem: "must name the other system as a URI (e.g. urn:oid:1.2.3 or https://old-system.example/patients), no spaces")
        }
        guard let buffer = req.body.data, buffer.readableBytes > 0 else { throw InvalidInput(path: "", problem: "the request has no CSV body") }
        guard let text = String(validating: Data(buffer: buffer), as: UTF8.self) else {
            throw InvalidInput(path: "", problem: "the file is not UTF-8 text; export it as UTF-8 CSV")
        }
        let records: [CSV.Record]
        do { records = try CSV.parse(text) } catch let malformed as CSV.Malformed {
            throw InvalidInput(path: "line \(malformed.line)", problem: malformed.problem)
        }
        guard let header = records.first else { throw InvalidInput(path: "", problem: "the file is empty") }
        let columns = try Self.columns(header.fields, req)
        if columns[.sourceID] != nil && source == nil {
            throw InvalidInput(path: "source", problem: "the file has an id column: name the system those ids come from (source=urn:…), so a re-run matches by it")
        }
        let rows = records.dropFirst()

        let today = req.today(in: try await req.clinic())
        let clinicID = staff.clinicID
        let run = {
            try await Self.run(rows, columns: columns, width: header.fields.count, format: format, source: source, dryRun: dryRun,
                               today: today, clinicID: clinicID, req: req)
        }
        let results = dryRun ? try await req.audited(.read, objectType: "PatientImport", run)
                             : try await req.audited(.create, objectType: "PatientImport", run)
        return Report(dryRun: dryRun, columns: Dictionary(uniqueKeysWithValues: columns.map { ($0.key.rawValue, header.fields[$0.value]) }),
                      dateFormat: format.rawValue, source: source, rows: rows.count,
                      created: results.filter { $0.outcome == "created" || $0.outcome == "create" }.count,
                      matched: results.filter { $0.outcome == "matched" }.count,
                      refused: results.filter { $0.outcome == "refused" }.count, results: results)
    }

    /// The header's names for an error message, the first 30 of them, each cut at 60 characters.
    static func listed(_ header: [String]) -> String {
        header.prefix(30).map { String($0.prefix(60)) }.joined(separator: ", ") + (header.count > 30 ? ", …" : "")
    }

    static func flag(_ req: Request, _ name: String, default value: Bool) throws -> Bool {
        guard let text = try? req.query.get(String.self, at: name) else { return value }
        switch text.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw InvalidInput(path: name, problem: "must be true or false")
        }
    }

    /// Which column holds each field: `column.<field>=<header>` as given, else the first header an alias names.
    static func columns(_ header: [String], _ req: Request) throws -> [Field: Int] {
        var columns: [Field: Int] = [:]
        let folded = header.map(Self.folded)
        for field in Field.allCases {
            if let named = try? req.query.get(String.self, at: "column.\(field.rawValue)") {
                guard !named.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw InvalidInput(path: "column.\(field.rawValue)", problem: "must name one of the file's columns: \(Self.listed(header))")
                }
                guard let index = header.firstIndex(of: named) ?? (Self.folded(named).isEmpty ? nil : folded.firstIndex(of: Self.folded(named))) else {
                    throw InvalidInput(path: "column.\(field.rawValue)", problem: "the file has no column '\(named.prefix(100))'; its columns are \(Self.listed(header))")
                }
                columns[field] = index
            } else if let index = folded.firstIndex(where: field.aliases.contains) {
                columns[field] = index
            }
        }
        let missing = Field.allCases.filter { $0.required && columns[$0] == nil }
        if !missing.isEmpty {
            throw InvalidInput(missing.map { FieldIssue(path: "column.\($0.rawValue)",
                                                        problem: "no column found for \($0.rawValue); name it, e.g. column.\($0.rawValue)=<header>") })
        }
        return columns
    }

    /// Checks every row, then (unless a dry run) stores what it can. Matching is against the registry as it was and the
    /// rows above: a file listing a patient twice creates them once.
    static func run(_ rows: ArraySlice<CSV.Record>, columns: [Field: Int], width: Int, format: DateFormat, source: String?, dryRun: Bool,
                    today: CalendarDate, clinicID: UUID, req: Request) async throws -> [RowResult] {
        let db = req.db
        let staff = try req.staff()
        struct Checked {
            let line: Int
            let details: PatientDetails.Valid?
            let sourceID: String?
            let reasons: [Reason]
        }
        var checked: [Checked] = []
        for row in rows {
            func value(_ field: Field) -> String? {
                guard let index = columns[field], index < row.fields.count else { return nil }
                let v = CSV.unneutralised(row.fields[index]).trimmingCharacters(in: .whitespacesAndNewlines)
                return v.isEmpty ? nil : v
            }
            var reasons: [Reason] = []
            if row.fields.count != width {
                reasons.append(Reason(field: "", problem: "has \(row.fields.count) columns where the header has \(width)"))
            }
            let birthText = value(.dateOfBirth) ?? ""
            let birth = format.read(birthText)
            if !birthText.isEmpty && birth == nil {
                reasons.append(Reason(field: "dateOfBirth", problem: "'\(birthText)' is not a date in the format \(format.rawValue)"))
            }
            var details: PatientDetails.Valid?
            do {
                details = try PatientDetails(givenName: value(.givenName) ?? "", familyName: value(.familyName) ?? "",
                                             dateOfBirth: birth?.description ?? (birthText.isEmpty ? "" : "2000-01-01"),
                                             phone: value(.phone), email: value(.email), fitzpatrickType: nil).validated(today: today)
            } catch let invalid as InvalidInput {
                reasons += invalid.issues.map { Reason(field: $0.path, problem: $0.problem) }
            }
            let sourceID = value(.sourceID)
            if let sourceID, sourceID.count > 200 { reasons.append(Reason(field: "sourceID", problem: "must be at most 200 characters")) }
            checked.append(Checked(line: row.line, details: reasons.isEmpty ? details : nil, sourceID: sourceID, reasons: reasons))
        }

        // What the registry already holds: by source id, and by name and date of birth (the dates in the file only).
        var bySource: [String: Patient] = [:]
        if let source {
            let ids = try await PatientIdentifier.query(on: db).filter(\.$clinicID == clinicID).filter(\.$system == source).all()
            let patients = try await Self.patients(ids.map(\.$patient.id), db: db)
            for id in ids { bySource[id.value] = patients[id.$patient.id] }
        }
        var byPerson: [String: Patient] = [:]
        let births = Array(Set(checked.compactMap { $0.details?.dateOfBirth.description }))
        for start in stride(from: 0, to: births.count, by: 500) {
            let chunk = Array(births[start..<min(start + 500, births.count)])
            for p in try await Patient.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$dateOfBirth ~~ chunk).all() {
                byPerson[Self.personKey(p.givenName, p.familyName, p.dateOfBirth)] = byPerson[Self.personKey(p.givenName, p.familyName, p.dateOfBirth)] ?? p
            }
        }

        var results: [RowResult] = []
        var seenSource: [String: Int] = [:]
        var seenPerson: [String: Int] = [:]
        /// The person key of each row that will create or was matched (to check a source id stays one person's).
        var personOf: [Int: String] = [:]
        /// Rows to create (their index in `results`), and source ids to link to patients already known.
        var toCreate: [(index: Int, details: PatientDetails.Valid, sourceID: String?)] = []
        var links: [(patient: UUID, sourceID: String)] = []
        /// A row that is the same patient as an earlier one: that row's index.
        var earlierRow: [Int: Int] = [:]
        for row in checked {
            guard let details = row.details else {
                results.append(RowResult(line: row.line, outcome: "refused", matchedBy: nil, patientID: nil, mrn: nil, reasons: row.reasons))
                continue
            }
            let person = Self.personKey(details.givenName, details.familyName, details.dateOfBirth.description)
            func refuse(_ problem: String) {
                results.append(RowResult(line: row.line, outcome: "refused", matchedBy: nil, patientID: nil, mrn: nil,
                                         reasons: [Reason(field: "sourceID", problem: problem)]))
            }
            // The other system's id names one person: the same name and date of birth, or the row is refused.
            if let id = row.sourceID, let stored = bySource[id] {
                guard Self.personKey(stored.givenName, stored.familyName, stored.dateOfBirth) == person else {
                    refuse("'\(id)' is already the id of \(stored.mrn), who has another name or date of birth")
                    continue
                }
                results.append(RowResult(line: row.line, outcome: "matched", matchedBy: "source-id", patientID: stored.id, mrn: stored.mrn, reasons: []))
                continue
            }
            if let id = row.sourceID, let earlier = seenSource[id] {
                guard personOf[earlier] == person else {
                    refuse("line \(results[earlier].line) already has the id '\(id)' for another person")
                    continue
                }
                earlierRow[results.count] = earlier
                results.append(RowResult(line: row.line, outcome: "matched", matchedBy: "earlier-row", patientID: results[earlier].patientID,
                                         mrn: results[earlier].mrn, reasons: [Reason(field: "", problem: "the same patient as line \(results[earlier].line)")]))
                continue
            }
            if let stored = byPerson[person] {
                if source != nil, let id = row.sourceID {
                    links.append((try stored.requireID(), id))
                    seenSource[id] = results.count
                    personOf[results.count] = person
                }
                results.append(RowResult(line: row.line, outcome: "matched", matchedBy: "name-and-birth-date", patientID: stored.id, mrn: stored.mrn, reasons: []))
                continue
            }
            if let earlier = seenPerson[person] {
                let first = results[earlier]
                // The other system's second record of the same person: its id leads to the same patient next time.
                if let id = row.sourceID, let details = checked[earlier].details {
                    toCreate.append((earlier, details, id))
                    seenSource[id] = earlier
                }
                earlierRow[results.count] = earlier
                results.append(RowResult(line: row.line, outcome: "matched", matchedBy: "earlier-row", patientID: nil, mrn: nil,
                                         reasons: [Reason(field: "", problem: "the same patient as line \(first.line)")]))
                continue
            }
            if let id = row.sourceID { seenSource[id] = results.count }
            seenPerson[person] = results.count
            personOf[results.count] = person
            toCreate.append((results.count, details, row.sourceID))
            results.append(RowResult(line: row.line, outcome: "create", matchedBy: nil, patientID: nil, mrn: nil, reasons: []))
        }
        // Who the file was matched to is patient data seen: audited, one row per patient (R9).
        let matched = Array(Set(results.filter { $0.outcome == "matched" }.compactMap(\.patientID)))
        if !matched.isEmpty {
            if Writes.current == nil {
                try await req.auditMany(.read, objectType: "Patient", objectID: nil, patientIDs: matched)
            } else {
                for id in matched { try await req.audit(.read, objectType: "Patient", objectID: id.uuidString, patientID: id, outcome: .success) }
            }
        }
        if dryRun { return results }

        // Each new patient once (a later row of the same person only adds its source id), then the links, then the audit.
        var made: [Int: Patient] = [:]
        var unique: [(index: Int, details: PatientDetails.Valid)] = []
        var planned = Set<Int>()
        for entry in toCreate where planned.insert(entry.index).inserted { unique.append((entry.index, entry.details)) }
        let patients = try await PatientRegistry(db: db, clinicID: clinicID).createMany(unique.map(\.details), by: staff.userID, at: req.dermis.clock.now())
        for (entry, patient) in zip(unique, patients) { made[entry.index] = patient }
        if let source {
            for entry in toCreate { if let id = entry.sourceID, let patient = made[entry.index] { links.append((patient.id!, id)) } }
            try await Self.link(links, source: source, clinicID: clinicID, at: req.dermis.clock.now(), db: db)
        }
        for patient in patients {
            try await req.audit(.create, objectType: "Patient", objectID: patient.id?.uuidString, patientID: patient.id, outcome: .success)
        }
        return results.enumerated().map { i, r in
            if let patient = made[i] {
                return RowResult(line: r.line, outcome: "created", matchedBy: nil, patientID: patient.id, mrn: patient.mrn, reasons: [])
            }
            if let earlier = earlierRow[i], let patient = made[earlier] {
                return RowResult(line: r.line, outcome: r.outcome, matchedBy: r.matchedBy, patientID: patient.id, mrn: patient.mrn, reasons: r.reasons)
            }
            return r
        }
    }

    static func personKey(_ given: String, _ family: String, _ birth: String) -> String {
        searchFolded(given) + "|" + searchFolded(family) + "|" + birth
    }

    static func patients(_ ids: [UUID], db: any Database) async throws -> [UUID: Patient] {
        var found: [UUID: Patient] = [:]
        for start in stride(from: 0, to: ids.count, by: 500) {
            for p in try await Patient.query(on: db).filter(\.$id ~~ Array(ids[start..<min(start + 500, ids.count)])).all() { found[p.id!] = p }
        }
        return found
    }

    /// The source system's ids, 200 to an INSERT.
    static func link(_ links: [(patient: UUID, sourceID: String)], source: String, clinicID: UUID, at now: Date, db: any Database) async throws {
        guard let sql = db as? any SQLDatabase else { throw Abort(.internalServerError) }
        for start in stride(from: 0, to: links.count, by: 200) {
            var insert = sql.insert(into: PatientIdentifier.schema).columns("id", "clinic_id", "patient_id", "system", "value", "created_at")
            for (patient, id) in links[start..<min(start + 200, links.count)] {
                insert = insert.values([SQLBind(UUID()), SQLBind(clinicID), SQLBind(patient), SQLBind(source), SQLBind(id), SQLBind(now)] as [any SQLExpression])
            }
            try await insert.run()
        }
    }

    // MARK: Export

    static func csvResponse(_ name: String, _ body: Response.Body) -> Response {
        var headers: HTTPHeaders = [:]
        headers.replaceOrAdd(name: .contentType, value: "text/csv; charset=utf-8")
        headers.replaceOrAdd(name: .contentDisposition, value: "attachment; filename=\"\(name)\"")
        headers.replaceOrAdd(name: .cacheControl, value: "private, no-store")
        return Response(status: .ok, headers: headers, body: body)
    }

    /// The whole registry (archived records too, marked), written 500 patients at a time; every patient audited.
    func exportPatients(req: Request) async throws -> Response {
        let staff = try req.staff()
        let body = Response.Body(asyncStream: { writer in
            do {
                try await writer.write(.buffer(ByteBuffer(string: CSV.line(["id", "mrn", "given_name", "family_name", "date_of_birth", "phone",
                                                                             "email", "fitzpatrick_type", "archived", "created_at", "updated_at"]))))
                var after: UUID?
                while true {
                    var query = Patient.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$id).limit(500)
                    if let after { query = query.filter(\.$id > after) }
                    let page = try await query.all()
                    guard let last = page.last else { break }
                    var text = ""
                    for p in page {
                        text += CSV.line([p.id!.uuidString.lowercased(), p.mrn, p.givenName, p.familyName, p.dateOfBirth, p.phoneE164 ?? "",
                                          p.email ?? "", p.fitzpatrickType.map(String.init) ?? "", p.archived ? "true" : "false",
                                          AuditLog.isoMilliseconds(p.createdAt), AuditLog.isoMilliseconds(p.updatedAt)])
                    }
                    try await req.auditMany(.export, objectType: "Patient", objectID: nil, patientIDs: page.compactMap(\.id))
                    try await writer.write(.buffer(ByteBuffer(string: text)))
                    after = last.id
                }
                try await writer.write(.end)
            } catch {
                try await writer.write(.error(error))
            }
        })
        return Self.csvResponse("patients.csv", body)
    }

    /// The appointments of a date range (all locations), as the calendar holds them.
    func exportAppointments(req: Request) async throws -> Response {
        let staff = try req.staff()
        let from = try AppointmentAPIController.date(try? req.query.get(String.self, at: "from"), "from")
        let to = try AppointmentAPIController.date((try? req.query.get(String.self, at: "to")) ?? from.description, "to")
        guard from <= to else { throw InvalidInput(path: "to", problem: "must not be before from") }
        guard from.days(until: to) <= 366 else { throw InvalidInput(path: "to", problem: "at most a year at a time") }
        let locations = try await Location.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all()
        let services = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all()
        let staffNames = try await StaffUser.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all()
        // The range in UTC days, widened a day each side; each booking is then kept if its own location's day is in range.
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let start = utc.date(from: DateComponents(year: from.year, month: from.month, day: from.day - 1))!
        let end = utc.date(from: DateComponents(year: to.year, month: to.month, day: to.day + 2))!
        let appointments = try await Appointment.query(on: req.db).filter(\.$clinic.$id == staff.clinicID)
            .filter(\.$startsAt >= start).filter(\.$startsAt < end).sort(\.$startsAt).all()
        var text = CSV.line(["id", "location", "local_date", "local_start", "local_end", "start_utc", "service", "zones", "patient_id", "patient_mrn",
                             "contact_name", "practitioner", "status", "source", "notes"])
        let patientIDs = Array(Set(appointments.compactMap(\.$patient.id)))
        let patients = try await Self.patients(patientIDs, db: req.db)
        var kept: [Appointment] = []
        let clock = DateFormatter()
        clock.dateFormat = "HH:mm"
        clock.locale = Locale(identifier: "en_US_POSIX")
        for a in appointments {
            guard let location = locations.first(where: { $0.id == a.$location.id }) else { continue }
            let day = CalendarDate(a.startsAt, in: location.zone)
            guard day >= from && day <= to else { continue }
            kept.append(a)
            clock.timeZone = location.zone
            let patient = a.$patient.id.flatMap { patients[$0] }
            text += CSV.line([a.id!.uuidString.lowercased(), location.name, day.description, clock.string(from: a.startsAt), clock.string(from: a.endsAt),
                              AuditLog.isoMilliseconds(a.startsAt), services.first { $0.id == a.$service.id }?.code ?? "", a.zones,
                              a.$patient.id?.uuidString.lowercased() ?? "", patient?.mrn ?? "", a.contactName,
                              staffNames.first { $0.id == a.practitionerID }?.name ?? "", a.status, a.source, a.notes])
        }
        let touched = Array(Set(kept.compactMap(\.$patient.id)))
        if touched.isEmpty { try await req.audit(.export, objectType: "Appointment", outcome: .success) }
        else { try await req.auditMany(.export, objectType: "Appointment", objectID: nil, patientIDs: touched) }
        return Self.csvResponse("appointments-\(from)-to-\(to).csv", .init(string: text))
    }
}
