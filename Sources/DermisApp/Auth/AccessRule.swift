import Vapor

/// Who may use a route. Every route gets exactly one; a route without one is refused (deny by default),
/// and a test walks every registered route to make sure none is missing.
enum AccessRule: Sendable {
    /// Anyone: health check, sign-in, static files.
    case open
    /// Only while no admin exists, and only from this machine (the first-run page).
    case firstRun
    /// Any browser session, whatever its stage: entering or enrolling a second factor, signing out.
    case signingIn
    /// Signed-in staff of these roles. `audits` names the patient-data object the route touches, so that refused
    /// attempts are audited too.
    case staff(Set<StaffRole>, audits: String? = nil)
    /// A patient holding a valid personal aftercare link (`:token`): no account, rate-limited; the route audits.
    case patientLink
    /// A patient signed in on their own pages (`/my`) with a sign-in link: that patient's records only. Every request
    /// is audited with the patient as the actor.
    case patient

    static let anyStaff: Set<StaffRole> = Set(StaffRole.allCases)
    static let clinical: Set<StaffRole> = [.admin, .practitioner]
    static let admins: Set<StaffRole> = [.admin]

    static let userInfoKey = "dermis.access"
}

extension Route {
    /// Attaches the route's access rule.
    @discardableResult
    func access(_ rule: AccessRule) -> Route {
        userInfo[AnySendableHashable(AccessRule.userInfoKey)] = rule
        return self
    }

    var accessRule: AccessRule? { userInfo[AnySendableHashable(AccessRule.userInfoKey)] as? AccessRule }

    /// Marks a POST another site may send (no Origin or Sec-Fetch-Site check): only for a route whose URL itself
    /// carries what authorises it, and whose only effect is harmless to its owner (a mail program's one-click
    /// unsubscribe, RFC 8058).
    @discardableResult
    func allowingCrossSite() -> Route {
        userInfo[AnySendableHashable("dermis.crossSite")] = true
        return self
    }

    var allowsCrossSite: Bool { userInfo[AnySendableHashable("dermis.crossSite")] as? Bool ?? false }

    /// Marks a route that checks a bearer token of its own (the metrics scraper's), which is no staff API token.
    @discardableResult
    func checkingOwnBearer() -> Route {
        userInfo[AnySendableHashable("dermis.ownBearer")] = true
        return self
    }

    var checksOwnBearer: Bool { userInfo[AnySendableHashable("dermis.ownBearer")] as? Bool ?? false }
}

/// The signed-in staff member behind a request, and how they signed in.
struct Principal: Sendable {
    let userID: UUID
    let clinicID: UUID
    let email: String
    let name: String
    let role: StaffRole
    let maxDepthMm: Double?
    let sessionID: UUID?
    let stage: SessionStage

    var isFullySignedIn: Bool { stage == .full }
}

extension Request {
    private struct PrincipalKey: StorageKey { typealias Value = Principal }

    var principal: Principal? {
        get { storage[PrincipalKey.self] }
        set { storage[PrincipalKey.self] = newValue }
    }

    /// The fully signed-in staff member; routes behind `.staff` always have one.
    func staff() throws -> Principal {
        guard let principal, principal.isFullySignedIn else { throw Abort(.unauthorized) }
        return principal
    }

    /// A machine client's call (the JSON API, FHIR): errors as JSON, never a redirect to the sign-in page.
    var isAPI: Bool { url.path.hasPrefix("/api/") || isFHIR }

    var isFHIR: Bool { url.path.hasPrefix("/fhir/") }

    /// The client's address (docs/SECURITY.md R19): the socket's, or — only from a configured trusted proxy — the
    /// right-most `X-Forwarded-For` hop that is not one. Vapor's `peerAddress` would believe anyone's header.
    var clientAddress: String {
        dermis.trustedProxies.client(socket: remoteAddress?.ipAddress, forwardedFor: headers[.xForwardedFor])
    }
}
