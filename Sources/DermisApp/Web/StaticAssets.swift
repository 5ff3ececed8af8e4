import Crypto
import Foundation
import Leaf
import LeafKit
import Vapor

/// The app's CSS and scripts, read into memory once at start: a request for one is answered from memory, and no other
/// request pays for a file-system probe (Vapor's `FileMiddleware` looks on disk for every path).
///
/// Each file has two addresses. `/css/dermis.css` answers with `no-cache` and an ETag, so a browser revalidates and gets
/// 304. `/assets/{fingerprint}/css/dermis.css` — what the pages link to, through `#asset("/css/dermis.css")` — is cached
/// for a year as immutable: the fingerprint changes when the file does, so a browser asks once per version.
struct StaticAssets: Sendable {
    struct Asset: Sendable {
        let body: ByteBuffer
        let contentType: HTTPMediaType
        let etag: String
        let fingerprint: String
    }

    let byPath: [String: Asset]

    static let prefix = "/assets/"

    /// Every file under `directory`, by its path from there (`/css/dermis.css`).
    static func load(directory: String) throws -> StaticAssets {
        let root = URL(fileURLWithPath: directory)
        var byPath: [String: Asset] = [:]
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else {
            return StaticAssets(byPath: [:])
        }
        for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let data = try Data(contentsOf: url)
            let path = "/" + url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count).drop { $0 == "/" }
            let digest = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
            let type = HTTPMediaType.fileExtension(url.pathExtension) ?? .binary
            byPath[path] = Asset(body: ByteBuffer(data: data), contentType: type, etag: "\"\(digest.prefix(32))\"", fingerprint: String(digest.prefix(16)))
        }
        return StaticAssets(byPath: byPath)
    }

    /// The fingerprinted address of `path`, or `path` itself when there is no such file.
    func url(_ path: String) -> String {
        guard let asset = byPath[path] else { return path }
        return Self.prefix + asset.fingerprint + path
    }

    /// The asset a request names, and whether it came by its fingerprinted address.
    func match(_ path: String) -> (Asset, immutable: Bool)? {
        if let asset = byPath[path] { return (asset, false) }
        guard path.hasPrefix(Self.prefix) else { return nil }
        let rest = path.dropFirst(Self.prefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let fingerprint = rest[..<slash]
        guard let asset = byPath[String(rest[slash...])], asset.fingerprint == fingerprint else { return nil }
        return (asset, true)
    }
}

/// Answers GET and HEAD for the static assets from memory (see `StaticAssets`); everything else passes on.
struct StaticAssetsMiddleware: AsyncMiddleware {
    let assets: StaticAssets

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard request.method == .GET || request.method == .HEAD, let (asset, immutable) = assets.match(request.url.path) else {
            return try await next.respond(to: request)
        }
        var headers = HTTPHeaders()
        headers.contentType = asset.contentType
        headers.replaceOrAdd(name: .eTag, value: asset.etag)
        headers.replaceOrAdd(name: .cacheControl, value: immutable ? "public, max-age=31536000, immutable" : "no-cache")
        if request.headers.first(name: .ifNoneMatch).map({ $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.contains(asset.etag) }) == true {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(buffer: asset.body))
    }
}

/// `#asset("/css/dermis.css")`: the file's fingerprinted address.
struct AssetTag: UnsafeUnescapedLeafTag {
    let assets: StaticAssets

    func render(_ ctx: LeafContext) throws -> LeafData {
        guard let path = ctx.parameters.first?.string else {
            throw Abort(.internalServerError, reason: "#asset needs the file's path, e.g. #asset(\"/css/dermis.css\")")
        }
        return .string(assets.url(path))
    }
}
