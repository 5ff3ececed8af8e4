import DermisCore
import Vapor

/// The registry's pages: search, add, view, edit (stale saves refused, both versions shown), archive.
struct PatientPagesController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let rule = AccessRule.staff(AccessRule.anyStaff, audits: "Patient")
        let patients = routes.grouped("patients")
        patients.get(use: list).access(rule)
        patients.get("new", use: newForm).access(rule)
        patients.post(use: create).access(rule)
        patients.get(":patientID", use: show).access(rule)
        patients.get(":patientID", "edit", use: editForm).access(rule)
        patients.post(":patientID", use: update).access(rule)
        patients.post(":patientID", "archive", use: archive).access(rule)
        patients.post(":patientID", "restore", use: restore).access(rule)
    }

    struct PatientRow: Encodable {
        let id: String
        let mrn: String
        let name: String
        let givenName: String
        let familyName: String
        let dateOfBirth: String
        let phone: String
        let email: String
        let fitzpatrick: String
        let archived: Bool
        let version: Int

        init(_ p: Patient) {
            id = p.id?.uuidString ?? ""
            mrn = p.mrn
            name = p.fullName
            givenName = p.givenName
            familyName = p.familyName
            dateOfBirth = p.dateOfBirth
            phone = p.phoneE164 ?? ""
            email = p.email ?? ""
            fitzpatrick = p.fitzpatrickType.map(String.init) ?? ""
            archived = p.archived
            version = p.version
        }
    }

    struct ListPage: Encodable {
        let page: PageHeader
        let q: String
        let includeArchived: Bool
        let patients: [PatientRow]
        let searched: Bool
    }

    func list(req: Request) async throws -> View {
        let staff = try req.staff()
        let q = (try? req.query.get(String.self, at: "q")) ?? ""
        let includeArchived = (try? req.query.get(String.self, at: "archived")) == "on"
        let found = try await req.audited(.search, objectType: "Patient") {
            try await PatientRegistry(db: req.db, clinicID: staff.clinicID).search(q, includeArchived: includeArchived)
        }
        return try await req.view.render("patients", ListPage(
            page: try await PageHeader(req, title: "Patients"), q: q, includeArchived: includeArchived,
            patients: found.map(PatientRow.init), searched: !q.isEmpty))
    }

    /// The form as typed, so a refused form comes back as it was sent.
    struct PatientForm: Content {
        var givenName: String?
        var familyName: String?
        var dateOfBirth: String?
        var phone: String?
        var email: String?
        var fitzpatrickType: String?
        var version: String?

        init(givenName: String? = nil, familyName: String? = nil, dateOfBirth: String? = nil, phone: String? = nil,
             email: String? = nil, fitzpatrickType: String? = nil, version: String? = nil) {
            self.givenName = givenName
            self.familyName = familyName
            self.dateOfBirth = dateOfBirth
            self.phone = phone
            self.email = email
            self.fitzpatrickType = fitzpatrickType
            self.version = version
        }

        init(_ p: Patient) {
            self.init(givenName: p.givenName, familyName: p.familyName, dateOfBirth: p.dateOfBirth, phone: p.phoneE164,
                      email: p.email, fitzpatrickType: p.fitzpatrickType.map(String.init), version: String(p.version))
        }

        func details() throws -> PatientDetails {
            var type: Int?
            if let text = fitzpatrickType?.trimmingCharacters(in: .whitespaces), !text.isEmpty {
                guard let parsed = Int(text) else { throw InvalidInput(path: "fitzpatrickType", problem: "must be a whole number from 1 to 6") }
                type = parsed
            }
            return PatientDetails(givenName: givenName ?? "", familyName: familyName ?? "", dateOfBirth: dateOfBirth ?? "",
                                  phone: phone, email: email, fitzpatrickType: type)
        }
    }

    struct FormPage: Encodable {
        let page: PageHeader
        let action: String
        let form: PatientForm
        let errors: [String: String]
        let patientID: String?
    }

    func newForm(req: Request) async throws -> View {
        try await req.view.render("patient-form", FormPage(page: try await PageHeader(req, title: "Add a patient"), action: "/patients",
                                                            form: PatientForm(), errors: [:], patientID: nil))
    }

    func create(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode(PatientForm.self)
        do {
            let patient = try await req.audited(.create, objectType: "Patient", subject: { (patient: Patient) in patient.id }) {
                let details = try form.details().validated(today: req.today(in: try await req.clinic()))
                return try await PatientRegistry(db: req.db, clinicID: staff.clinicID).create(details, by: staff.userID, at: req.dermis.clock.now())
            }
            return req.redirect(to: "/patients/\(try patient.requireID())", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await refused(req, title: "Add a patient", action: "/patients", form: form, invalid: invalid, patientID: nil)
        }
    }

    struct ShowPage: Encodable {
        let page: PageHeader
        let patient: PatientRow
        let saved: Bool
        /// Devices the patient is signed in on, on their own pages.
        let portalDevices: Int
        /// The packages bought: sessions left and the last day.
        let packages: [BillingController.PackageLine]
    }

    func show(req: Request) async throws -> View {
        let staff = try req.staff()
        let id = try req.patientID()
        let patient = try await req.audited(.read, objectType: "Patient") {
            try await PatientRegistry(db: req.db, clinicID: staff.clinicID).find(id)
        }
        let devices = try await PortalSessions.liveCount(patientID: id, at: req.dermis.clock.now(), on: req.db)
        // The packages bought (most patients have none: then no more is read).
        let packages = try await Packages(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now()).standings(patientID: id)
        return try await req.view.render("patient", ShowPage(page: try await PageHeader(req, title: patient.familyName),
                                                             patient: PatientRow(patient), saved: (try? req.query.get(String.self, at: "saved")) != nil,
                                                             portalDevices: devices,
                                                             packages: packages.isEmpty ? []
                                                                : BillingController.packageLines(packages, today: req.today(in: try await req.clinic()))))
    }

    func editForm(req: Request) async throws -> View {
        let staff = try req.staff()
        let id = try req.patientID()
        let patient = try await req.audited(.read, objectType: "Patient") {
            try await PatientRegistry(db: req.db, clinicID: staff.clinicID).find(id)
        }
        return try await req.view.render("patient-form", FormPage(page: try await PageHeader(req, title: "Edit patient"),
                                                                  action: "/patients/\(id)", form: PatientForm(patient), errors: [:],
                                                                  patientID: id.uuidString))
    }

    struct ConflictPage: Encodable {
        let page: PageHeader
        let yours: PatientForm
        let current: PatientRow
        let patientID: String
    }

    func update(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.patientID()
        let form = try req.content.decode(PatientForm.self)
        let registry = PatientRegistry(db: req.db, clinicID: staff.clinicID)
        do {
            _ = try await req.audited(.update, objectType: "Patient") {
                guard let version = Int(form.version ?? "") else { throw InvalidInput(path: "version", problem: "is missing; reload the page") }
                let details = try form.details().validated(today: req.today(in: try await req.clinic()))
                return try await registry.update(id, with: details, expectedVersion: version, by: staff.userID, at: req.dermis.clock.now())
            }
            return req.redirect(to: "/patients/\(id)?saved=1", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await refused(req, title: "Edit patient", action: "/patients/\(id)", form: form, invalid: invalid, patientID: id.uuidString)
        } catch let abort as any AbortError where abort.status == .conflict {
            // Nothing is lost: the page shows what you typed beside what is saved now.
            let current = try await registry.find(id)
            let page = ConflictPage(page: try await PageHeader(req, title: "Saved by someone else"), yours: form,
                                    current: PatientRow(current), patientID: id.uuidString)
            return try await req.view.render("patient-conflict", page).response(.conflict, for: req)
        }
    }

    func archive(req: Request) async throws -> Response {
        try await setArchived(req, true)
    }

    func restore(req: Request) async throws -> Response {
        try await setArchived(req, false)
    }

    private func setArchived(_ req: Request, _ archived: Bool) async throws -> Response {
        let staff = try req.staff()
        let id = try req.patientID()
        // The version the page showed, when it sent one: archiving what someone has just changed is refused.
        let shown = (try? req.content.get(String.self, at: "version")).flatMap { Int($0) }
        _ = try await req.audited(.archive, objectType: "Patient") {
            try await PatientRegistry(db: req.db, clinicID: staff.clinicID)
                .setArchived(id, archived, expectedVersion: shown, by: staff.userID, at: req.dermis.clock.now())
        }
        return req.redirect(to: "/patients/\(id)", redirectType: .normal)
    }

    private func refused(_ req: Request, title: String, action: String, form: PatientForm, invalid: InvalidInput,
                         patientID: String?) async throws -> Response {
        var errors: [String: String] = [:]
        for issue in invalid.issues where errors[issue.path] == nil { errors[issue.path] = issue.problem }
        let page = FormPage(page: try await PageHeader(req, title: title), action: action, form: form, errors: errors, patientID: patientID)
        return try await req.view.render("patient-form", page).response(.unprocessableEntity, for: req)
    }
}
