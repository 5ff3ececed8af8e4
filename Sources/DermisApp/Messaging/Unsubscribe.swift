import DermisCore
import Fluent
import Vapor

/// A patient who asked to receive no more e-mail from the clinic: how and when. Kept apart from the patient record (a
/// choice about messages, not a clinical change), and honoured by the outbox worker when it sends.
final class MessageOptOut: Model, @unchecked Sendable {
    static let schema = "message_opt_out"

    /// The patient's id.
    @ID(custom: .id, generatedBy: .user) var id: UUID?
    @Parent(key: "clinic_id") var clinic: Clinic
    @Field(key: "at") var at: Date
    /// `link` (the page behind the e-mail's link) or `one-click` (the mail program's button, RFC 8058).
    @Field(key: "how") var how: String

    init() {}
}

struct PatientMessaging: AsyncMigration {
    func prepare(on database: any Database) async throws {
        try await database.schema(OutboxMessage.schema).field("patient_id", .uuid).update()
        try await database.schema(MessageOptOut.schema)
            .field(.id, .uuid, .identifier(auto: false))
            .field("clinic_id", .uuid, .required, .references(Clinic.schema, .id))
            .field("at", .datetime, .required)
            .field("how", .string, .required)
            .create()
    }

    func revert(on database: any Database) async throws {
        try await database.schema(MessageOptOut.schema).delete()
        try await database.schema(OutboxMessage.schema).deleteField("patient_id").update()
    }
}

/// `List-Unsubscribe` (RFC 2369) and its one-click POST (RFC 8058): `/unsubscribe/{patient}/{mac}`. The MAC is made
/// with the server's secret key, so a link cannot be made for someone else; the page asks before it stops anything, and
/// a mail program's one-click POST (no Origin header: it comes from the provider) stops at once. Audited.
struct UnsubscribeController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("unsubscribe", ":patientID", ":mac", use: page).access(.open)
        // A mail program's one-click POST comes from the provider, with no Origin: the link's MAC authorises it.
        routes.post("unsubscribe", ":patientID", ":mac", use: stop).access(.open).allowingCrossSite()
    }

    static func path(for patientID: UUID, on app: Application) -> String {
        "/unsubscribe/\(patientID.uuidString.lowercased())/\(app.dermis.secretBox.mac("unsubscribe \(patientID.uuidString.lowercased())"))"
    }

    /// The patient behind a genuine link; nil for anything else.
    private func patient(_ req: Request) async throws -> Patient? {
        guard let text = req.parameters.get("patientID"), let id = UUID(uuidString: text),
              let mac = req.parameters.get("mac"), mac == req.dermis.secretBox.mac("unsubscribe \(id.uuidString.lowercased())") else { return nil }
        return try await Patient.find(id, on: req.db)
    }

    struct Page: Encodable {
        let clinicName: String
        let stopped: Bool
        let action: String
    }

    func page(req: Request) async throws -> Response {
        guard let patient = try await patient(req) else { throw Abort(.notFound, reason: "This link is not known.") }
        let clinic = try await Clinic.require(patient.$clinic.id, on: req.db)
        let stopped = try await MessageOptOut.find(try patient.requireID(), on: req.db) != nil
        return try await req.view.render("unsubscribe", Page(clinicName: clinic.name, stopped: stopped, action: req.url.path))
            .encodeResponse(for: req)
    }

    func stop(req: Request) async throws -> Response {
        guard let patient = try await patient(req) else { throw Abort(.notFound, reason: "This link is not known.") }
        let id = try patient.requireID()
        req.auditClinicID = patient.$clinic.id
        let oneClick = (try? req.content.get(String.self, at: "List-Unsubscribe")) == "One-Click"
        try await req.audited(.update, objectType: "MessageOptOut", objectID: id.uuidString, patientID: id) {
            guard try await MessageOptOut.find(id, on: req.db) == nil else { return }
            let optOut = MessageOptOut()
            optOut.id = id
            optOut.$clinic.id = patient.$clinic.id
            optOut.at = req.dermis.clock.now()
            optOut.how = oneClick ? "one-click" : "link"
            // Two clicks at once: the second finds the first's row by its key, and is just as done.
            do {
                try await Writes.savepoint(req.db) { db in try await optOut.create(on: db) }
            } catch let error as any DatabaseError where error.isConstraintFailure {
                return
            }
        }
        if oneClick { return Response(status: .ok) }
        let clinic = try await Clinic.require(patient.$clinic.id, on: req.db)
        return try await req.view.render("unsubscribe", Page(clinicName: clinic.name, stopped: true, action: req.url.path)).encodeResponse(for: req)
    }
}
