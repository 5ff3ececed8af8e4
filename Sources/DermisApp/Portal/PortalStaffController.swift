import DermisCore
import Fluent
import Vapor

/// What clinical staff do about the patient's own pages: mark a patient's question answered, and choose which photos
/// the patient sees (none until a practitioner shares one).
struct PortalStaffController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Patient")
        let patient = routes.grouped("patients", ":patientID")
        patient.post("questions", ":questionID", "answered", use: answered).access(clinical)
        patient.post("photos", ":photoID", "share", use: share).access(clinical)
    }

    func answered(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let patientID = try patient.requireID()
        let id = try req.uuidParameter("questionID", notFound: "No such question.")
        try await req.audited(.update, objectType: "PortalQuestion", objectID: id.uuidString, patientID: patientID) {
            guard let question = try await PortalQuestion.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == patientID).first() else {
                throw Abort(.notFound, reason: "No such question.")
            }
            guard question.answeredAt == nil else { return }
            question.answeredAt = req.dermis.clock.now()
            question.answeredBy = staff.userID
            try await question.save(on: req.db)
        }
        return req.redirect(to: "/patients/\(patientID)/course#questions", redirectType: .normal)
    }

    struct ShareForm: Content {
        var shared: String?
    }

    func share(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let patientID = try patient.requireID()
        let id = try req.uuidParameter("photoID", notFound: "No such photo.")
        let form = try req.content.decode(ShareForm.self)
        guard let value = form.shared, ["0", "1"].contains(value) else {
            throw InvalidInput(path: "shared", problem: "must be 1 (show the patient) or 0 (stop showing)")
        }
        try await req.audited(.update, objectType: "Photo", objectID: id.uuidString, patientID: patientID) {
            guard let photo = try await Photo.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == patientID).first() else {
                throw Abort(.notFound, reason: "No such photo.")
            }
            photo.sharedAt = value == "1" ? req.dermis.clock.now() : nil
            photo.sharedBy = value == "1" ? staff.userID : nil
            try await photo.save(on: req.db)
        }
        return req.redirect(to: "/patients/\(patientID)/photos", redirectType: .normal)
    }
}
