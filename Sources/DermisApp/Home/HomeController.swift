import SQLKit
import Vapor

/// `/healthz` for load balancers and the home page a newcomer lands on.
struct HomeController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("healthz", use: health).access(.open)
        routes.get("healthz", "live", use: live).access(.open)
        routes.get(use: home).access(.open)
    }

    /// 200 once the database answers a read of the clinic table (migrated, reachable). Plain SQL, no model: a load
    /// balancer asks this several times a second.
    func health(req: Request) async throws -> Response {
        guard let sql = req.db as? any SQLDatabase else { throw Abort(.internalServerError) }
        _ = try await sql.raw("SELECT 1 FROM \(unsafeRaw: Clinic.schema) LIMIT 1").all()
        return Response(status: .ok, body: .init(string: "ok"))
    }

    /// 200 while the process serves, asking nothing of the database: a liveness probe, and the lightest route through
    /// every middleware (scripts/bench reads it against a bare Vapor app).
    func live(req: Request) async throws -> Response {
        Response(status: .ok, body: .init(string: "ok"))
    }

    struct HomePage: Encodable {
        let page: PageHeader
        let zoneCount: Int
        let indicationCount: Int
        let ruleCount: Int
    }

    func home(req: Request) async throws -> View {
        let p = req.dermis.clinicalProtocol
        return try await req.view.render("home", HomePage(
            page: try await PageHeader(req, title: "Home"),
            zoneCount: p.zones.count, indicationCount: p.indications.count, ruleCount: p.contraindications.count))
    }
}
