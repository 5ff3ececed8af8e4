import DermisCore
import Vapor

/// The clinical engine over HTTP, exactly as docs/CONTRACT.md shapes it: `POST /api/v1/screen` and `POST /api/v1/plan`.
struct EngineAPIController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let api = routes.grouped("api", "v1")
        api.post("screen", use: screen).access(.staff(AccessRule.anyStaff))
        api.post("plan", use: plan).access(.staff(AccessRule.anyStaff))
    }

    struct ScreenRequest: Decodable {
        let intake: Intake
        let on: CalendarDate?
    }

    func screen(req: Request) async throws -> Response {
        let body = try req.decodeJSON(ScreenRequest.self)
        let today = try await req.today(in: req.clinic())
        let date = body.on ?? today
        return try contractJSON(Screening.screen(body.intake, on: date, protocol: req.dermis.clinicalProtocol))
    }

    func plan(req: Request) async throws -> Response {
        let body = try req.decodeJSON(PlanRequest.self)
        let today = try await req.today(in: req.clinic())
        return try contractJSON(Planning.plan(body, today: today, protocol: req.dermis.clinicalProtocol))
    }

    /// The contract's JSON, byte for byte what `dermis … --json` prints.
    private func contractJSON<T: Encodable>(_ value: T) throws -> Response {
        let response = Response(status: .ok, body: .init(data: try ContractJSON.encode(value)))
        response.headers.contentType = .json
        return response
    }
}
