import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    /// R17: the OpenAPI document says exactly what the JSON API serves — every route under /api/v1 is described, and
    /// every described operation is a route. (schemathesis, in `.ci/run`, checks the answers against it.)
    @Suite struct OpenAPI {
        @Test func theDocumentDescribesEveryAPIRouteAndNothingElse() async throws {
            try await withDermis { app, _ in
                var document: [String: Any] = [:]
                try await app.testing().test(.GET, "/api/v1/openapi.json") { res in
                    #expect(res.status == .ok && res.headers.contentType == .json)
                    document = (try? JSONSerialization.jsonObject(with: Data(buffer: res.body))) as? [String: Any] ?? [:]
                }
                #expect((document["openapi"] as? String)?.hasPrefix("3.1") == true)
                let methods: Set<String> = ["get", "put", "post", "patch", "delete"]
                var described: Set<String> = []
                var operationIDs: [String] = []
                for (path, item) in document["paths"] as? [String: [String: Any]] ?? [:] {
                    for (method, operation) in item where methods.contains(method) {
                        described.insert("\(method.uppercased()) \(path)")
                        operationIDs.append((operation as? [String: Any])?["operationId"] as? String ?? "")
                    }
                }
                var served: Set<String> = []
                for route in app.routes.all {
                    let path = "/" + route.path.map { component -> String in
                        if case let .parameter(name) = component { return "{\(name)}" }
                        return component.description
                    }.joined(separator: "/")
                    if path.hasPrefix("/api/v1/"), path != "/api/v1/openapi.json" { served.insert("\(route.method) \(path)") }
                }
                #expect(served.subtracting(described).isEmpty, "served but not described: \(served.subtracting(described).sorted())")
                #expect(described.subtracting(served).isEmpty, "described but not served: \(described.subtracting(served).sorted())")
                #expect(Set(operationIDs).count == operationIDs.count && !operationIDs.contains(""), "each operation has its own operationId")
            }
        }
    }
}
