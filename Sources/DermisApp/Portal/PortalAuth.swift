import Fluent
import Foundation
import SQLKit
import Vapor

/// The patient signed in on their own pages (`/my`): who, of which clinic, on which device session.
struct PortalPrincipal: Sendable {
    let patientID: UUID
    let clinicID: UUID
    let sessionID: UUID
}

extension Request {
    private struct PortalKey: StorageKey { typealias Value = PortalPrincipal }

    /// The patient behind a `.patient` route (nil on every other route: a staff session never opens these pages).
    var portal: PortalPrincipal? {
        get { storage[PortalKey.self] }
        set { storage[PortalKey.self] = newValue }
    }

    func portalPatient() throws -> PortalPrincipal {
        guard let portal else { throw Abort(.unauthorized) }
        return portal
    }
}

/// Patient sessions: a cookie of their own (never the staff cookie), 30 days at most on one device, ended by the
/// patient (this device or all), by staff, or by time. Only the token's digest is stored.
enum PortalSessions {
    static let lifetime: TimeInterval = 30 * 86_400
    /// How long a sign-in link works.
    static let linkLifetime: TimeInterval = 15 * 60
    /// Links one address may ask for in an hour, and one patient in a day (whatever address or device asked).
    static let linksPerAddressPerHour = 3
    static let linksPerPatientPerDay = 6
    /// Sign-in requests one client address may make in an hour (unknown tokens: `PatientLinks.missesPerAddressPerHour`).
    static let requestsPerClientPerHour = 30

    static func cookieName(secure: Bool) -> String { secure ? "__Host-dermis_patient" : "dermis_patient" }

    static func setCookie(_ value: String, on response: Response, request: Request, expire: Bool = false) {
        let secure = request.dermis.settings.usesSecureCookies
        response.cookies[cookieName(secure: secure)] = HTTPCookies.Value(
            string: value, expires: expire ? Date(timeIntervalSince1970: 0) : nil, maxAge: expire ? 0 : Int(lifetime),
            path: "/", isSecure: secure, isHTTPOnly: true, sameSite: .lax)
    }

    /// Starts a session for the patient on this device and sets its cookie.
    static func start(patientID: UUID, on request: Request, response: Response, in db: any Database) async throws -> PortalSession {
        let token = Secrets.token()
        let now = request.dermis.clock.now()
        let session = PortalSession()
        session.$patient.id = patientID
        session.tokenHash = Secrets.digest(token)
        session.createdAt = now
        session.lastSeenAt = now
        session.expiresAt = now.addingTimeInterval(lifetime)
        session.device = device(request.headers.first(name: .userAgent) ?? "")
        try await session.create(on: db)
        setCookie(token, on: response, request: request)
        return session
    }

    /// The live session behind the request's patient cookie, with its patient's clinic; nil when there is none, it
    /// ended or expired, or the patient's record is archived.
    static func principal(forCookieOf request: Request) async throws -> PortalPrincipal? {
        guard let token = request.cookies[cookieName(secure: request.dermis.settings.usesSecureCookies)]?.string,
              (20...100).contains(token.count) else { return nil }
        let now = request.dermis.clock.now()
        guard let session = try await PortalSession.query(on: request.db).filter(\.$tokenHash == Secrets.digest(token))
            .filter(\.$endedAt == nil).first(), now < session.expiresAt,
              let patient = try await Patient.find(session.$patient.id, on: request.db), !patient.archived else { return nil }
        if now.timeIntervalSince(session.lastSeenAt) >= 60 {
            try await Writes.transaction(request.db) { db in
                try await PortalSession.query(on: db).filter(\.$id == session.requireID()).set(\.$lastSeenAt, to: now).update()
            }
        }
        return PortalPrincipal(patientID: try patient.requireID(), clinicID: patient.$clinic.id, sessionID: try session.requireID())
    }

    /// Ends one of the patient's sessions (signing out on this device).
    static func end(session id: UUID, of patientID: UUID, at now: Date, on db: any Database) async throws {
        try await PortalSession.query(on: db).filter(\.$patient.$id == patientID).filter(\.$id == id).filter(\.$endedAt == nil)
            .set(\.$endedAt, to: now).update()
    }

    /// Ends every session of the patient and spends every sign-in link not yet used (sign out everywhere, staff ending
    /// them, the e-mail address or phone number changing): nothing issued before now signs in any more. `by` is the
    /// staff member, nil for the patient.
    static func endAll(patientID: UUID, by staffID: UUID?, at now: Date, on db: any Database) async throws {
        try await Writes.transaction(db) { db in
            try await PortalSession.query(on: db).filter(\.$patient.$id == patientID).filter(\.$endedAt == nil)
                .set(\.$endedAt, to: now).set(\.$endedBy, to: staffID).update()
            try await PortalSignInLink.query(on: db).filter(\.$patient.$id == patientID).filter(\.$usedAt == nil)
                .set(\.$usedAt, to: now).update()
        }
    }

    static func live(patientID: UUID, at now: Date, on db: any Database) async throws -> [PortalSession] {
        try await liveQuery(patientID, now, db).sort(\.$lastSeenAt, .descending).all()
    }

    /// How many devices the patient is signed in on (a count: the staff's patient page only shows the number).
    static func liveCount(patientID: UUID, at now: Date, on db: any Database) async throws -> Int {
        try await liveQuery(patientID, now, db).count()
    }

    private static func liveQuery(_ patientID: UUID, _ now: Date, _ db: any Database) -> QueryBuilder<PortalSession> {
        PortalSession.query(on: db).filter(\.$patient.$id == patientID).filter(\.$endedAt == nil).filter(\.$expiresAt > now)
    }

    /// "Safari on iPhone": enough for a patient to tell their devices apart, nothing more of the user agent.
    static func device(_ userAgent: String) -> String {
        let browsers = [("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari")]
        let systems = [("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Mac OS X", "Mac"), ("Windows", "Windows"), ("Linux", "Linux")]
        let browser = browsers.first { userAgent.contains($0.0) }?.1 ?? "A browser"
        let system = systems.first { userAgent.contains($0.0) }?.1
        return system.map { "\(browser) on \($0)" } ?? browser
    }
}
