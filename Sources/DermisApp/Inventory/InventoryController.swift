import DermisCore
import Fluent
import Vapor

/// Admin pages for pens and cartridge stock, and the recall of a lot with every session that used it.
struct InventoryController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let routes = routes.grouped(UnitOfWorkMiddleware())
        let admin = AccessRule.staff(AccessRule.admins)
        let inventory = routes.grouped("admin", "inventory")
        inventory.get(use: show).access(admin)
        inventory.post("devices", use: addDevice).access(admin)
        inventory.post("devices", ":deviceID", "active", use: setDeviceActive).access(admin)
        inventory.post("lots", use: receiveLot).access(admin)
        inventory.get("lots", ":lotID", use: showLot).access(.staff(AccessRule.admins, audits: "CartridgeLot"))
        inventory.post("lots", ":lotID", "recall", use: recallLot).access(admin)
    }

    struct DeviceRow: Encodable {
        let id: String
        let model: String
        let serial: String
        let profile: String
        let active: Bool
    }

    struct LotRow: Encodable {
        let id: String
        let lotNumber: String
        let expiry: String
        let needles: Int
        let remaining: Int
        let received: Int
        let state: String
    }

    struct InventoryPage: Encodable {
        let page: PageHeader
        let devices: [DeviceRow]
        let lots: [LotRow]
        let profiles: [Option]
        let errors: [ErrorLine]
    }

    private func inventory(_ req: Request) throws -> Inventory {
        Inventory(db: req.db, clinicID: try req.staff().clinicID)
    }

    func show(req: Request) async throws -> View {
        try await render(req, errors: [])
    }

    private func render(_ req: Request, errors: [ErrorLine]) async throws -> View {
        let stock = try inventory(req)
        let today = try await req.today(in: req.clinic())
        let p = req.dermis.clinicalProtocol
        return try await req.view.render("inventory", InventoryPage(
            page: try await PageHeader(req, title: "Pens and cartridges"),
            devices: try await stock.devices().map {
                DeviceRow(id: $0.id?.uuidString ?? "", model: $0.model, serial: $0.serial, profile: p.device($0.profile)?.displayName ?? $0.profile,
                          active: $0.active)
            },
            lots: try await stock.lots().map { Self.row($0, today: today) },
            profiles: p.devices.map { Option(id: $0.id, name: $0.displayName, selected: false) }, errors: errors))
    }

    static func row(_ lot: CartridgeLot, today: CalendarDate) -> LotRow {
        LotRow(id: lot.id?.uuidString ?? "", lotNumber: lot.lotNumber, expiry: lot.expiry, needles: lot.needleCount,
               remaining: lot.quantityRemaining, received: lot.quantityReceived, state: lot.problem(on: today) ?? "in use")
    }

    struct DeviceForm: Content {
        var model: String?
        var serial: String?
        var profile: String?
    }

    func addDevice(req: Request) async throws -> Response {
        let form = try req.content.decode(DeviceForm.self)
        do {
            _ = try await inventory(req).register(model: form.model ?? "", serial: form.serial ?? "", profile: form.profile ?? "",
                                                  protocol: req.dermis.clinicalProtocol, at: req.dermis.clock.now())
            return req.redirect(to: "/admin/inventory", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await render(req, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    struct ActiveForm: Content { var active: String? }

    /// Takes a pen out of service (it is no longer offered when charting) or back into it; its history stays.
    func setDeviceActive(req: Request) async throws -> Response {
        let device = try await inventory(req).device(try req.uuidParameter("deviceID", notFound: "No such pen."))
        device.active = try req.content.decode(ActiveForm.self).active == "true"
        try await device.save(on: req.db)
        return req.redirect(to: "/admin/inventory", redirectType: .normal)
    }

    struct LotForm: Content {
        var lotNumber: String?
        var expiry: String?
        var needleCount: String?
        var quantity: String?
    }

    func receiveLot(req: Request) async throws -> Response {
        let form = try req.content.decode(LotForm.self)
        do {
            _ = try await inventory(req).receive(lotNumber: form.lotNumber ?? "", expiry: form.expiry ?? "", needleCount: form.needleCount ?? "",
                                                 quantity: form.quantity ?? "", today: try await req.today(in: req.clinic()), at: req.dermis.clock.now())
            return req.redirect(to: "/admin/inventory", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await render(req, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }

    struct UseRow: Encodable {
        let patientID: String
        let patientName: String
        let mrn: String
        let sessionID: String
        let date: String
        let practitioner: String
    }

    struct LotPage: Encodable {
        let page: PageHeader
        let lot: LotRow
        let recalledAt: String?
        let recallReason: String?
        let uses: [UseRow]
        let errors: [ErrorLine]
    }

    func showLot(req: Request) async throws -> View {
        try await renderLot(req, errors: [])
    }

    private func renderLot(_ req: Request, errors: [ErrorLine]) async throws -> View {
        let id = try req.uuidParameter("lotID", notFound: "No such cartridge lot.")
        let lot = try await inventory(req).lot(id)
        let uses = try await LotRecall.uses(of: id, on: req.db)
        // Listing who was treated with a lot reads patient data: audit it.
        try await req.audit(.read, objectType: "CartridgeLot", objectID: id.uuidString, outcome: .success)
        return try await req.view.render("lot", LotPage(
            page: try await PageHeader(req, title: "Lot \(lot.lotNumber)"), lot: Self.row(lot, today: try await req.today(in: req.clinic())),
            recalledAt: lot.recalledAt.map(AuditLog.isoMilliseconds), recallReason: lot.recallReason, uses: uses, errors: errors))
    }

    struct RecallForm: Content { var reason: String? }

    func recallLot(req: Request) async throws -> Response {
        let id = try req.uuidParameter("lotID", notFound: "No such cartridge lot.")
        do {
            _ = try await inventory(req).recall(id, reason: try req.content.decode(RecallForm.self).reason ?? "", at: req.dermis.clock.now())
            try await req.audit(.update, objectType: "CartridgeLot", objectID: id.uuidString, outcome: .success)
            return req.redirect(to: "/admin/inventory/lots/\(id)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderLot(req, errors: ErrorLine.list(invalid)).response(.unprocessableEntity, for: req)
        }
    }
}
