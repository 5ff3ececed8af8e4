import DermisCore
import Fluent
import Foundation
import Vapor

/// Keeps photos: cleaned by `PhotoSanitizer`, written to the store, recorded with their SHA-256; read back only
/// after the digest is checked.
struct PhotoService {
    let req: Request

    /// The most an upload may be, and the most pixels a photo may have (a 48-megapixel phone photo fits).
    static let maxBytes = 15 * 1_048_576
    static let maxPixels = 50_000_000
    /// What a request carrying one photo may be, with its form fields.
    static let maxBody: ByteCount = "16mb"

    var store: PhotoStore { PhotoStore(dataDirectory: req.dermis.settings.dataDirectory) }
    var sanitizer: PhotoSanitizer { PhotoSanitizer(maxBytes: Self.maxBytes, maxPixels: Self.maxPixels) }

    struct Upload: Sendable {
        var data: Data
        var patientID: UUID
        var chartID: UUID?
        var zone: String
        var view: String
        var takenOn: CalendarDate
        var source: String
        var uploadedBy: UUID?
    }

    /// A photo checked, cleaned and written to the store, not yet recorded.
    struct Prepared: Sendable {
        let upload: Upload
        let clean: PhotoSanitizer.Clean
        let storedName: String
    }

    /// Checks the zone and view, cleans the image and writes it to the store. This is the slow part (decoding and
    /// encoding up to 50 megapixels), so it runs before any unit of work opens: nobody's write waits for it.
    func prepare(_ upload: Upload, field: String = "photo") async throws -> Prepared {
        let p = req.dermis.clinicalProtocol
        var issues: [FieldIssue] = []
        if p.zone(upload.zone) == nil { issues.append(FieldIssue(path: "zone", problem: "unknown zone '\(upload.zone)'")) }
        if !Photo.views.map(\.id).contains(upload.view) {
            issues.append(FieldIssue(path: "view", problem: "must be one of \(Photo.views.map(\.id).joined(separator: ", "))"))
        }
        if !issues.isEmpty { throw InvalidInput(issues) }
        let data = upload.data
        let sanitizer = sanitizer
        let store = store
        // Decoding, re-encoding and writing the file all happen on the image threads, never on an event loop.
        let (clean, storedName) = try await req.application.imageDecoding.run {
            let clean = try sanitizer.clean(data, field: field)
            return (clean, try store.write(clean.data, fileExtension: clean.kind.fileExtension))
        }
        return Prepared(upload: upload, clean: clean, storedName: storedName)
    }

    /// Records a prepared photo, in the open unit of work when there is one.
    func record(_ prepared: Prepared) async throws -> Photo {
        let upload = prepared.upload
        let clean = prepared.clean
        let photo = Photo()
        photo.$patient.id = upload.patientID
        photo.chartID = upload.chartID
        photo.zone = upload.zone
        photo.view = upload.view
        photo.takenOn = upload.takenOn.description
        photo.uploadedAt = req.dermis.clock.now()
        photo.uploadedBy = upload.uploadedBy
        photo.source = upload.source
        photo.contentType = clean.kind.contentType
        photo.width = clean.width
        photo.height = clean.height
        photo.byteCount = clean.data.count
        photo.sha256 = Secrets.digest(clean.data)
        photo.storedName = prepared.storedName
        try await photo.create(on: req.db)
        return photo
    }

    /// Removes a prepared photo's file when its row never committed.
    func discard(_ prepared: Prepared) {
        store.remove(prepared.storedName)
    }

    /// Prepares a photo, then runs `body` with it (which records it in its unit of work); if `body` fails, the file goes.
    func keeping<T>(_ upload: Upload?, _ body: (Prepared?) async throws -> T) async throws -> T {
        var prepared: Prepared?
        if let upload { prepared = try await prepare(upload) }
        do {
            return try await body(prepared)
        } catch {
            if let prepared { discard(prepared) }
            throw error
        }
    }

    /// The photo's bytes as a response, after its digest is checked; a mismatch is logged and refused, never served.
    /// (Read and hashed on the application's thread pool, off the event loops.)
    func response(for photo: Photo) async throws -> Response {
        do {
            let store = store
            let (name, digest) = (photo.storedName, photo.sha256)
            let data = try await req.application.threadPool.runIfActive { try store.read(name, sha256: digest) }
            let response = Response(status: .ok, body: .init(data: data))
            response.headers.contentType = photo.contentType == "image/png" ? .png : .jpeg
            response.headers.replaceOrAdd(name: .cacheControl, value: "private, no-store")
            response.headers.replaceOrAdd(name: .contentDisposition, value: "inline")
            return response
        } catch let failure as PhotoStore.IntegrityFailure {
            req.logger.error("Photo \(photo.id?.uuidString ?? "?") failed its integrity check: \(failure.reason)")
            throw PhotoIntegrityError()
        }
    }
}

/// A stored photo that no longer matches its SHA-256: reported to the user as such (not a generic 500).
struct PhotoIntegrityError: AbortError {
    var status: HTTPResponseStatus { .unprocessableEntity }
    var reason: String { "This photo failed its integrity check (its file no longer matches the SHA-256 recorded at upload) and is not shown. The clinic's administrator has been told in the server log." }
}
