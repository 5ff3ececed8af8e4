import Foundation
import HTTPTypes
import OpenAPIRuntime

/// Sends a staff API token (`dermis create-token`, or the account page) with every call.
public struct BearerToken: ClientMiddleware {
    private let token: String

    public init(_ token: String) { self.token = token }

    public func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                          next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        return try await next(request, body, baseURL)
    }
}
