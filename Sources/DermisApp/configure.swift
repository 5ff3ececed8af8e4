import DermisCore
import Fluent
import Foundation
import Leaf
import LeafKit
import Vapor

/// The one composition root: the `dermis` executable and the tests both call it.
public func configure(_ app: Application, settings: DermisSettings) async throws {
    try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
    let secrets = try SecretBox.load(path: settings.secretKeyPath)
    app.dermis = DermisContext(clinicalProtocol: try settings.loadProtocol(), clock: settings.clock, settings: settings,
                               trustedProxies: try TrustedProxies(parsing: settings.trustedProxies),
                               secretBox: secrets.box, firstRunCode: FirstRunCode(),
                               patientText: try PatientText.load(overrides: settings.patientTextFile))
    app.passwords.use(.bcrypt(cost: settings.passwordCost))
    app.http.server.configuration.tlsConfiguration = try TLS.configuration(settings)

    // Order matters: headers and errors wrap everything; static files need no session; then who, then may they.
    // One pipeline, not eight middlewares: each Vapor middleware of its own is a hop between the event loop and the
    // concurrency pool and back; in one, the stages call each other directly (scripts/bench measures the difference).
    let assets = try StaticAssets.load(directory: resourcesPath("Public"))
    app.middleware = Middlewares()
    app.middleware.use(MiddlewarePipeline([
        RequestLogMiddleware(), SecurityHeadersMiddleware(), GenericErrorMiddleware(), RequestLimitsMiddleware(),
        StaticAssetsMiddleware(assets: assets), CrossSiteRequestMiddleware(), AuthenticationMiddleware(), AccessMiddleware(),
    ]))
    app.routes.defaultMaxBodySize = "1mb"

    try DatabaseSetup.use(settings, on: app)
    try await DatabaseSetup.ensureDurable(app.db)
    app.migrations.add(CreateClinic())
    app.migrations.add(CreateStaffAccounts())
    app.migrations.add(CreateAuditEvent())
    app.migrations.add(CreatePatient())
    app.migrations.add(CreateIntakeAndScreening())
    app.migrations.add(CreateInventory())
    app.migrations.add(CreateTreatmentRecords())
    app.migrations.add(CreateFollowUp())
    app.migrations.add(CreateScheduling())
    app.migrations.add(AuditChains())
    app.migrations.add(CredentialLifecycle())
    app.migrations.add(UnscreenedZoneOverrides())
    app.migrations.add(MessageDelivery())
    app.migrations.add(PatientMessaging())
    app.migrations.add(MessageChannels())
    app.migrations.add(InboundSMSOnce())
    app.migrations.add(PatientSearchIndex.Migration())
    app.migrations.add(ResourceHistory.Migration())
    app.migrations.add(BulkExportJob.Migration())
    app.migrations.add(PatientRecordIndexes())
    app.migrations.add(PatientKeysetIndex())
    app.migrations.add(ReportFacts.Migration())
    app.migrations.add(CreatePortal())
    app.migrations.add(PatientAnswersReview())
    app.migrations.add(Invoice.Migration())
    app.migrations.add(BillingPolicies())
    app.migrations.add(CreateWaitlist())
    app.migrations.add(CreatePackages())
    app.migrations.add(CreateMemberships())
    try await app.autoMigrate()
    if try await PatientSearchIndex.ensureComplete(on: app.db) { app.logger.notice("The patient search index was rebuilt.") }
    try await SecondFactor.sealStoredKeys(on: app, keyWasCreated: secrets.created, keyPath: settings.secretKeyPath)
    let checkpoints = AuditCheckpoints(dataDirectory: settings.dataDirectory, logger: app.logger)
    app.auditCheckpoints = checkpoints
    let metrics = app.metrics
    app.auditWriter = AuditWriter(database: { [unowned app] in app.db }, checkpoints: checkpoints, observe: { metrics.auditAppended(took: $0) })
    app.lifecycle.use(AuditCheckpointsAtShutdown())
    app.imageDecoding = ImageDecoding()
    app.mail = try MailSetup.configure(app, settings: settings)
    try Application.configurePayments(app, settings: settings)
    app.lifecycle.use(ImageDecodingShutdown())

    // Not `.leaf`: Leaf's application renderer switches the shared template cache off whenever Vapor's environment is
    // "development" (the default for `dermis serve`), so every page re-read and re-parsed its templates. The requests'
    // renderers (`req.view`) are built from the same parts and leave the cache as configured below.
    app.views.use { app in
        LeafRenderer(configuration: app.leaf.configuration, tags: app.leaf.tags, cache: app.leaf.cache, sources: app.leaf.sources,
                     eventLoop: app.eventLoopGroup.next(), userInfo: app.leaf.userInfo.merging(["application": app]) { $1 })
    }
    // The bundle sits under .build in development: allow hidden folders, but only inside the views folder.
    let views = resourcesPath("Views")
    app.leaf.sources = .singleSource(NIOLeafFiles(
        fileio: app.fileio, limits: [.toSandbox, .requireExtensions], sandboxDirectory: views, viewDirectory: views))
    // Templates are parsed once; `DERMIS_RELOAD_TEMPLATES=1` re-reads them on every render while editing them.
    app.leaf.cache.isEnabled = !settings.reloadTemplates
    app.leaf.tags["asset"] = AssetTag(assets: assets)

    try app.register(collection: HomeController())
    try app.register(collection: SignInController())
    try app.register(collection: PasswordController())
    try app.register(collection: AccountController())
    try app.register(collection: PatientPagesController())
    try app.register(collection: ReportsController())
    try app.register(collection: TodayController())
    try app.register(collection: PatientAPIController())
    try app.register(collection: StaffAdminController())
    try app.register(collection: AuditPageController())
    try app.register(collection: PlanPageController())
    try app.register(collection: EngineAPIController())
    try app.register(collection: CourseController())
    try app.register(collection: InventoryController())
    try app.register(collection: ConsentController())
    try app.register(collection: SessionController())
    try app.register(collection: FollowUpController())
    try app.register(collection: CareController())
    try app.register(collection: PortalSignInController())
    try app.register(collection: PortalController())
    try app.register(collection: PortalStaffController())
    try app.register(collection: AdverseEventController())
    try app.register(collection: PhotoController())
    try app.register(collection: ScheduleSetupController())
    try app.register(collection: ScheduleAdminController())
    try app.register(collection: AppointmentAPIController())
    try app.register(collection: CalendarController())
    try app.register(collection: PublicBookingController())
    try app.register(collection: OutboxController())
    try app.register(collection: UnsubscribeController())
    try app.register(collection: SMSWebhookController())
    try app.register(collection: PaymentWebhookController())
    try app.register(collection: BillingController())
    try app.register(collection: WaitlistController())
    try app.register(collection: PortalWaitlistController())
    try app.register(collection: MessagePreferencesController())
    try app.register(collection: MessagingAdminController())
    try app.register(collection: MetricsController())
    try app.register(collection: FHIRController())
    try app.register(collection: PatientCSVController())
    try app.register(collection: try OpenAPIController())
    RequestLogMiddleware.notePatterns(app.routes)
}

/// Writes the audit chains' last heads when the server stops.
private struct AuditCheckpointsAtShutdown: LifecycleHandler {
    func shutdown(_ application: Application) {
        application.auditCheckpoints.flush()
    }
}

/// A folder of the app's bundled resources, with a trailing slash.
func resourcesPath(_ folder: String) -> String {
    Bundle.module.url(forResource: "Resources", withExtension: nil)!.appendingPathComponent(folder).path + "/"
}

/// What every request handler may need: the protocol in force and the clock. A class, so that handing it to a request
/// is one reference, not a copy of every setting (it is read many times a request).
final class DermisContext: Sendable {
    let clinicalProtocol: ClinicalProtocol
    let clock: any Clock
    let settings: DermisSettings
    let trustedProxies: TrustedProxies
    let secretBox: SecretBox
    let firstRunCode: FirstRunCode
    /// The patient pages' sentences (the English catalogue, or a clinic's translation of it).
    let patientText: PatientText

    init(clinicalProtocol: ClinicalProtocol, clock: any Clock, settings: DermisSettings, trustedProxies: TrustedProxies,
         secretBox: SecretBox, firstRunCode: FirstRunCode, patientText: PatientText) {
        self.clinicalProtocol = clinicalProtocol
        self.clock = clock
        self.settings = settings
        self.trustedProxies = trustedProxies
        self.secretBox = secretBox
        self.firstRunCode = firstRunCode
        self.patientText = patientText
    }
}

extension Application {
    private struct DermisKey: StorageKey { typealias Value = DermisContext }

    var dermis: DermisContext {
        get {
            guard let context = storage[DermisKey.self] else { fatalError("configure(_:settings:) was not called") }
            return context
        }
        set { storage[DermisKey.self] = newValue }
    }
}

extension Request {
    var dermis: DermisContext { application.dermis }

    /// The caller's clinic: the signed-in staff member's, else the one a patient link or public page chose; with
    /// neither (the sign-in page), the clinic when the database holds only one. One database may hold several clinics,
    /// and nothing is ever read from another's because it happened to be created first.
    func clinic() async throws -> Clinic? {
        if let id = auditClinicID { return try await Clinic.find(id, on: db) }
        let two = try await Clinic.query(on: db).limit(2).all()
        return two.count == 1 ? two[0] : nil
    }

    /// The clinic a public page serves (online booking, the patient's sign-in): `?clinic=` (or the form's `clinic`) when
    /// the database holds several, else its one clinic; 404 with `several` when it holds several and none is named. Its
    /// rows go to that clinic's audit chain.
    func publicClinic(several: String) async throws -> Clinic {
        let chosen = (try? query.get(String.self, at: "clinic")) ?? (try? content.get(String.self, at: "clinic"))
        if let chosen, !chosen.isEmpty {
            guard let id = UUID(uuidString: chosen), let clinic = try await Clinic.find(id, on: db) else {
                throw Abort(.notFound, reason: "This clinic is not served here. Use the link your clinic gave you.")
            }
            auditClinicID = clinic.id
            return clinic
        }
        guard let clinic = try await clinic() else { throw Abort(.notFound, reason: several) }
        auditClinicID = clinic.id
        return clinic
    }

    /// Today in the clinic's time zone, from the injected clock.
    func today(in clinic: Clinic?) -> CalendarDate {
        CalendarDate(dermis.clock.now(), in: clinic?.zone ?? .current)
    }
}
