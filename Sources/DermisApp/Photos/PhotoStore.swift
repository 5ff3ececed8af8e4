import Foundation

/// Photo files on disk under `<data dir>/photos`, outside any public folder, named by the server only.
/// Every read checks the file against the SHA-256 stored with its record: a changed byte is reported, never served.
struct PhotoStore: Sendable {
    let directory: URL

    init(dataDirectory: String) {
        directory = URL(fileURLWithPath: dataDirectory, isDirectory: true).appendingPathComponent("photos", isDirectory: true)
    }

    struct IntegrityFailure: Error, Sendable {
        let storedName: String
        let reason: String
    }

    /// Writes the bytes under a new random name and returns it; the file is readable by this user only.
    func write(_ data: Data, fileExtension: String) throws -> String {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let name = "\(UUID().uuidString.lowercased()).\(fileExtension)"
        let url = directory.appendingPathComponent(name)
        try data.write(to: url, options: [.atomic])
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        return name
    }

    /// The stored bytes, if they still hash to `sha256`.
    func read(_ name: String, sha256 expected: String) throws -> Data {
        guard Self.isServerName(name) else { throw IntegrityFailure(storedName: name, reason: "not a name this server makes") }
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path) else {
            throw IntegrityFailure(storedName: name, reason: "the file is missing")
        }
        guard Secrets.digest(data) == expected else { throw IntegrityFailure(storedName: name, reason: "the file no longer matches its SHA-256") }
        return data
    }

    func remove(_ name: String) {
        guard Self.isServerName(name) else { return }
        try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
    }

    func url(of name: String) -> URL { directory.appendingPathComponent(name) }

    /// A UUID and a known extension: nothing a client sent can reach the file system.
    static func isServerName(_ name: String) -> Bool {
        let parts = name.split(separator: ".")
        return parts.count == 2 && UUID(uuidString: String(parts[0])) != nil && ["jpg", "png"].contains(parts[1])
    }
}
