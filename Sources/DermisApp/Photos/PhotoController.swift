import DermisCore
import Fluent
import Foundation
import Vapor

/// Before/after photos per zone and view: upload from the tablet, the patient's gallery, a side-by-side comparison
/// of one zone and view across sessions, and the image itself — served only to staff, every view audited.
struct PhotoController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        // Clinical photos are for the people treating the patient: the front desk books, it does not see them.
        let read = AccessRule.staff(AccessRule.clinical, audits: "Photo")
        let clinical = AccessRule.staff(AccessRule.clinical, audits: "Photo")
        let photos = routes.grouped("patients", ":patientID", "photos")
        photos.get(use: gallery).access(read)
        photos.on(.POST, body: .collect(maxSize: PhotoService.maxBody), use: upload).access(clinical)
        photos.get("compare", use: compare).access(read)
        photos.get(":photoID", use: image).access(read)
        let api = routes.grouped("api", "v1", "patients", ":patientID", "photos")
        api.get(use: apiList).access(read)
        api.on(.POST, body: .collect(maxSize: PhotoService.maxBody), use: apiUpload).access(clinical)
    }

    struct PhotoJSON: Content {
        let id: UUID
        let chartID: UUID?
        let zone: String
        let view: String
        let takenOn: String
        let contentType: String
        let width: Int
        let height: Int
        let sha256: String
        let source: String
        let url: String
    }

    static func json(_ photo: Photo) throws -> PhotoJSON {
        PhotoJSON(id: try photo.requireID(), chartID: photo.chartID, zone: photo.zone, view: photo.view, takenOn: photo.takenOn,
                  contentType: photo.contentType, width: photo.width, height: photo.height, sha256: photo.sha256, source: photo.source,
                  url: "/patients/\(photo.$patient.id)/photos/\(try photo.requireID())")
    }

    // MARK: Pages

    struct Tile: Encodable {
        let id: String
        let zone: String
        let zoneName: String
        let view: String
        let viewName: String
        let takenOn: String
        let depth: String?
        let source: String
        /// Shown to the patient on their own pages.
        let shared: Bool
    }

    struct GalleryPage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let photos: [Tile]
        let zones: [Option]
        let views: [Option]
        let sessions: [Option]
        let today: String
        let canUpload: Bool
        let errors: [ErrorLine]
    }

    func gallery(req: Request) async throws -> Response {
        try await renderGallery(req, status: .ok, errors: [])
    }

    private func renderGallery(_ req: Request, status: HTTPResponseStatus, errors: [ErrorLine]) async throws -> Response {
        let patient = try await req.patient()
        let photos = try await req.audited(.search, objectType: "Photo") {
            try await Photo.query(on: req.db).filter(\.$patient.$id == patient.requireID()).sort(\.$takenOn, .descending).all()
        }
        let sessions = try await TreatmentService(req: req, patient: patient, staff: try req.staff()).sessions()
        let p = req.dermis.clinicalProtocol
        let page = GalleryPage(
            page: try await PageHeader(req, title: "Photos"), patientID: try patient.requireID().uuidString,
            patientName: patient.fullName, photos: try await tiles(req, photos, sessions: sessions),
            zones: p.zones.map { Option(id: $0.id, name: $0.displayName, selected: false) },
            views: Photo.views.map { Option(id: $0.id, name: $0.label, selected: $0.id == "front") },
            sessions: sessions.map { Option(id: $0.chartID.uuidString, name: "Session of \(AuditLog.isoDay($0.createdAt))", selected: $0.chartID == sessions.last?.chartID) },
            today: try await req.today(in: req.clinic()).description,
            canUpload: AccessRule.clinical.contains(try req.staff().role), errors: errors)
        return try await req.view.render("photos", page).response(status, for: req)
    }

    /// Tiles with the depth charted in the photo's zone in its session, when it has one.
    private func tiles(_ req: Request, _ photos: [Photo], sessions: [TreatmentSession]) async throws -> [Tile] {
        let p = req.dermis.clinicalProtocol
        let byChart = Dictionary(sessions.map { ($0.chartID, $0) }, uniquingKeysWith: { a, _ in a })
        return try photos.map { photo in
            let depth = photo.chartID.flatMap { byChart[$0] }?.zones.first { $0.zone == photo.zone }.map { formatMillimetres($0.depthMm) + " mm" }
            return Tile(id: try photo.requireID().uuidString, zone: photo.zone, zoneName: p.zone(photo.zone)?.displayName ?? photo.zone,
                        view: photo.view, viewName: Photo.views.first { $0.id == photo.view }?.label ?? photo.view,
                        takenOn: photo.takenOn, depth: depth, source: photo.source == "patient-link" ? "sent by the patient" : "clinic", shared: photo.sharedAt != nil)
        }
    }

    struct UploadForm: Content {
        var photo: File?
        var zone: String?
        var view: String?
        var takenOn: String?
        var session: String?
    }

    private func save(_ req: Request) async throws -> Photo {
        let patient = try await req.patient()
        let form: UploadForm
        do {
            form = try req.content.decode(UploadForm.self)
        } catch {
            throw InvalidInput(path: "photo", problem: "send the photo as multipart/form-data with the fields photo, zone and view")
        }
        guard let file = form.photo, file.data.readableBytes > 0 else { throw InvalidInput(path: "photo", problem: "choose a photo to upload") }
        let today = try await req.today(in: req.clinic())
        let takenText = (form.takenOn ?? "").isEmpty ? today.description : form.takenOn!
        guard let takenOn = CalendarDate(iso: takenText), takenOn <= today else {
            throw InvalidInput(path: "takenOn", problem: "must be a date YYYY-MM-DD, not after today")
        }
        var chartID: UUID?
        if let session = form.session, !session.isEmpty {
            guard let id = UUID(uuidString: session), try await TreatmentSession.query(on: req.db).filter(\.$chartID == id)
                .filter(\.$patient.$id == patient.requireID()).first() != nil else {
                throw InvalidInput(path: "session", problem: "is not one of this patient's sessions")
            }
            chartID = id
        }
        let staff = try req.staff()
        let photos = PhotoService(req: req)
        let upload = PhotoService.Upload(data: Data(buffer: file.data), patientID: try patient.requireID(), chartID: chartID,
                                         zone: form.zone ?? "", view: form.view ?? "", takenOn: takenOn, source: "staff", uploadedBy: staff.userID)
        return try await photos.keeping(upload) { prepared in
            try await req.audited(.create, objectType: "Photo", patientID: upload.patientID) {
                guard let prepared else { throw Abort(.internalServerError) }
                return try await photos.record(prepared)
            }
        }
    }

    func upload(req: Request) async throws -> Response {
        do {
            _ = try await save(req)
        } catch let invalid as InvalidInput {
            return try await renderGallery(req, status: .unprocessableEntity, errors: ErrorLine.list(invalid))
        }
        return req.redirect(to: "/patients/\(try req.patientID())/photos", redirectType: .normal)
    }

    func image(req: Request) async throws -> Response {
        let patient = try await req.patient()
        let id = try req.uuidParameter("photoID", notFound: "No such photo.")
        return try await req.audited(.read, objectType: "Photo", objectID: id.uuidString, patientID: try patient.requireID()) {
            guard let photo = try await Photo.query(on: req.db).filter(\.$id == id).filter(\.$patient.$id == patient.requireID()).first() else {
                throw Abort(.notFound, reason: "No such photo.")
            }
            return try await PhotoService(req: req).response(for: photo)
        }
    }

    struct ComparePage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let zoneName: String
        let viewName: String
        let photos: [Tile]
        let zones: [Option]
        let views: [Option]
    }

    /// The same zone and view across sessions, oldest first, each with its date and the depth used there.
    func compare(req: Request) async throws -> View {
        let patient = try await req.patient()
        let p = req.dermis.clinicalProtocol
        let zone = (try? req.query.get(String.self, at: "zone")) ?? ""
        let view = (try? req.query.get(String.self, at: "view")) ?? "front"
        guard p.zone(zone) != nil else { throw Abort(.badRequest, reason: "zone: choose one of \(p.zones.map(\.id).joined(separator: ", "))") }
        guard Photo.views.contains(where: { $0.id == view }) else { throw Abort(.badRequest, reason: "view: choose one of \(Photo.views.map(\.id).joined(separator: ", "))") }
        let photos = try await req.audited(.search, objectType: "Photo") {
            try await Photo.query(on: req.db).filter(\.$patient.$id == patient.requireID()).filter(\.$zone == zone).filter(\.$view == view)
                .sort(\.$takenOn).sort(\.$uploadedAt).all()
        }
        let sessions = try await TreatmentService(req: req, patient: patient, staff: try req.staff()).sessions()
        return try await req.view.render("photo-compare", ComparePage(
            page: try await PageHeader(req, title: "Compare photos"), patientID: try patient.requireID().uuidString,
            patientName: patient.fullName, zoneName: p.zone(zone)?.displayName ?? zone,
            viewName: Photo.views.first { $0.id == view }?.label ?? view, photos: try await tiles(req, photos, sessions: sessions),
            zones: p.zones.map { Option(id: $0.id, name: $0.displayName, selected: $0.id == zone) },
            views: Photo.views.map { Option(id: $0.id, name: $0.label, selected: $0.id == view) }))
    }

    // MARK: API

    func apiList(req: Request) async throws -> [PhotoJSON] {
        let patient = try await req.patient()
        return try await req.audited(.search, objectType: "Photo") {
            try await Photo.query(on: req.db).filter(\.$patient.$id == patient.requireID()).sort(\.$takenOn).all().map(Self.json)
        }
    }

    func apiUpload(req: Request) async throws -> Response {
        try await Self.json(try await save(req)).encodeResponse(status: .created, for: req)
    }
}
