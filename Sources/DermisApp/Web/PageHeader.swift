import Vapor

/// What the header of every page shows: the clinic, whether it is the demo, the protocol in force, who is signed in.
struct PageHeader: Encodable {
    let title: String
    let clinicName: String
    let isDemo: Bool
    let protocolVersion: String
    let userName: String?
    let isAdmin: Bool
    let isClinical: Bool
    let signedIn: Bool
    let inSession: Bool

    init(_ req: Request, title: String) async throws {
        let clinic = try await req.clinic()
        self.title = title
        self.clinicName = clinic?.name ?? "Dermis (no clinic set up — run `dermis demo` or `dermis create-admin`)"
        self.isDemo = clinic?.isDemo ?? false
        self.protocolVersion = req.dermis.clinicalProtocol.version
        let principal = req.principal
        self.userName = principal?.name
        self.signedIn = principal?.isFullySignedIn ?? false
        self.isAdmin = signedIn && principal?.role == .admin
        self.isClinical = signedIn && principal.map { AccessRule.clinical.contains($0.role) } == true
        self.inSession = principal?.sessionID != nil
    }
}

extension View {
    /// The rendered page with a status other than 200 (a refused form is 422, a stale save 409).
    func response(_ status: HTTPStatus, for req: Request) async throws -> Response {
        let response = try await encodeResponse(for: req)
        response.status = status
        return response
    }
}
