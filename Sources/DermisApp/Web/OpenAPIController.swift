import Foundation
import Vapor

/// `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the JSON API (`Resources/openapi.json`), the one a
/// generated client (`DermisClient`) and schemathesis read. A test holds it to the routes actually registered.
struct OpenAPIController: RouteCollection {
    static let path = resourcesPath("") + "openapi.json"

    let document: ByteBuffer

    init() throws {
        guard let data = FileManager.default.contents(atPath: Self.path) else {
            throw Abort(.internalServerError, reason: "The OpenAPI document is missing from the bundle: \(Self.path)")
        }
        document = ByteBuffer(data: data)
    }

    func boot(routes: any RoutesBuilder) throws {
        routes.get("api", "v1", "openapi.json", use: serve).access(.open)
    }

    func serve(req: Request) async throws -> Response {
        var headers: HTTPHeaders = [:]
        headers.replaceOrAdd(name: .contentType, value: "application/json")
        headers.replaceOrAdd(name: .cacheControl, value: "public, max-age=300")
        return Response(status: .ok, headers: headers, body: .init(buffer: document))
    }
}
