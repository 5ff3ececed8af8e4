import Vapor

/// `/healthz` for load balancers and the home page a newcomer lands on.
struct HomeController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("healthz", use: health)
        routes.get(use: home)
    }

    /// 200 once the database answers.
    func health(req: Request) async throws -> Response {
        _ = try await req.clinic()
        return Response(status: .ok, body: .init(string: "ok"))
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

/// What the header of every page shows: the clinic, whether it is the demo, and the protocol in force.
struct PageHeader: Encodable {
    let title: String
    let clinicName: String
    let isDemo: Bool
    let protocolVersion: String

    init(_ req: Request, title: String) async throws {
        let clinic = try await req.clinic()
        self.title = title
        self.clinicName = clinic?.name ?? "Dermis (no clinic set up — run `dermis demo`)"
        self.isDemo = clinic?.isDemo ?? false
        self.protocolVersion = req.dermis.clinicalProtocol.version
    }
}
