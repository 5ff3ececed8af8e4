import DermisCore
import Fluent
import Foundation
import Vapor

/// The patient asks for an earlier time for their next treatment, from their own pages: between two days, at a
/// location, with anyone. When a time comes free they are offered it by message like any waiting patient; taking it
/// releases their later booking, if they have one. They see and withdraw what they asked.
struct PortalWaitlistController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let my = routes.grouped("my", "waitlist")
        my.get(use: page).access(.patient)
        my.post(use: ask).access(.patient)
        my.post(":entryID", "withdraw", use: withdraw).access(.patient)
    }

    struct Page: Encodable {
        let my: MyPage
        let locations: [Option]
        let earliest: String
        let latest: String
        let waiting: [String]
        let entryIDs: [String]
        let blocked: String?
        let replaces: String?
        let errors: [ErrorLine]
        let done: Bool
    }

    private func render(_ req: Request, _ c: PortalController.Context, form: [String: String], errors: [ErrorLine], status: HTTPStatus) async throws -> Response {
        let t = c.text
        let clinicID = try c.clinic.requireID()
        let scheduling = SchedulingService(req: req, clinicID: clinicID)
        let locations = try await scheduling.locations().filter(\.active)
        let today = CalendarDate(req.dermis.clock.now(), in: c.zone)
        let plan = try await TreatmentPlanRecord.query(on: req.db).filter(\.$patient.$id == c.patientID).sort(\.$version, .descending).first()
        let entries = try await WaitlistEntry.query(on: req.db).filter(\.$patient.$id == c.patientID).filter(\.$status == "waiting").sort(\.$createdAt).all()
        let treatment = try await scheduling.services().first(where: \.isTreatment)
        let later = try await Appointment.query(on: req.db).filter(\.$patient.$id == c.patientID).filter(\.$status == AppointmentStatus.booked.rawValue)
            .filter(\.$startsAt > req.dermis.clock.now()).sort(\.$startsAt).all().first { $0.$service.id == treatment?.id }
        return try await req.view.render("my-waitlist", Page(
            my: c.page(req, "waitlist.title"),
            locations: locations.map { Option(id: $0.id!.uuidString, name: $0.name, selected: $0.id?.uuidString == form["location"]) },
            earliest: form["earliest"] ?? today.description, latest: form["latest"] ?? today.adding(days: 28).description,
            waiting: entries.map { t("waitlist.item", ["from": $0.earliest, "to": $0.latest]) }, entryIDs: entries.map { $0.id!.uuidString },
            blocked: plan == nil || treatment == nil ? t("waitlist.noPlan") : nil,
            replaces: later.map { a in t("waitlist.replaces", ["when": LocalTime.words(a.startsAt, in: c.zone)]) },
            errors: errors, done: (try? req.query.get(String.self, at: "done")) == "1")).encodeResponse(status: status, for: req)
    }

    func page(req: Request) async throws -> Response {
        let c = try await PortalController.context(req)
        return try await req.audited(.read, objectType: "WaitlistEntry", patientID: c.patientID) {
            try await render(req, c, form: [:], errors: [], status: .ok)
        }
    }

    func ask(req: Request) async throws -> Response {
        let c = try await PortalController.context(req)
        let form = (try? req.content.decode([String: String].self)) ?? [:]
        do {
            _ = try await req.audited(.create, objectType: "WaitlistEntry", patientID: c.patientID) {
                let scheduling = SchedulingService(req: req, clinicID: try c.clinic.requireID())
                guard let record = try await TreatmentPlanRecord.query(on: req.db).filter(\.$patient.$id == c.patientID)
                    .sort(\.$version, .descending).first(), let treatment = try await scheduling.services().first(where: \.isTreatment) else {
                    throw DomainError.conflict(c.text("waitlist.noPlan"))
                }
                return try await scheduling.addToWaitlist(patient: c.patient, locationID: form["location"].flatMap(UUID.init(uuidString:)),
                                                          serviceCode: treatment.code, zones: try record.plan.zones.map(\.zone),
                                                          earliest: form["earliest"], latest: form["latest"], practitionerID: nil,
                                                          source: RecordSource.patientPortal, by: nil)
            }
        } catch let invalid as InvalidInput {
            return try await render(req, c, form: form, errors: PortalController.patientWords(invalid, c), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await render(req, c, form: form, errors: [ErrorLine(field: "earliest", message: c.text("waitlist.already"))], status: .conflict)
        }
        return req.redirect(to: "/my/waitlist?done=1", redirectType: .normal)
    }

    func withdraw(req: Request) async throws -> Response {
        let c = try await PortalController.context(req)
        let id = try req.uuidParameter("entryID", notFound: "Not found.")
        try await req.audited(.update, objectType: "WaitlistEntry", objectID: id.uuidString, patientID: c.patientID) {
            guard try await WaitlistEntry.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == c.patientID).first() != nil else {
                throw Abort(.notFound)
            }
            try await ConditionalUpdate(WaitlistEntry.self, id: id, on: req.db).where(\.$status, .equal, "waiting")
                .set(\.$status, to: "withdrawn").set(\.$updatedAt, to: req.dermis.clock.now())
                .run(orThrow: Abort(.notFound))
        }
        return req.redirect(to: "/my/waitlist", redirectType: .normal)
    }
}
