import DermisCore
import Foundation

/// How one Dermis server is set up: where its data lives, which database, which protocol, which clock.
public struct DermisSettings: Sendable {
    /// Holds the SQLite file and (later) the photo store. `DERMIS_DATA_DIR`, default `./data`.
    public var dataDirectory: String
    /// `postgres://…` switches from embedded SQLite to PostgreSQL.
    public var databaseURL: String?
    /// A clinic's protocol override file; the bundled protocol when nil.
    public var protocolFile: String?
    /// Fills an empty database with the fictional demo clinic.
    public var seedDemo: Bool
    /// The demo clinic comes with three months of fictional history (off for tests that need an empty clinic).
    public var demoHistory = true
    /// The seed the demo's history is drawn from: the same seed and day give the same clinic.
    public var demoSeed: UInt64 = DemoHistory.defaultSeed
    public var clock: any Clock
    /// Cookies get `Secure` and the `__Host-` prefix even without TLS here or an https public address: Dermis is reached
    /// over HTTPS some other way (`DERMIS_SECURE_COOKIES=1`). See `usesSecureCookies`.
    public var secureCookies: Bool
    /// Dermis serves HTTPS itself with this certificate chain and key (PEM; `--tls-cert`, `--tls-key`).
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// The address patients reach this server at (`https://clinic.example`), for links in messages; without it, links
    /// are built from the request's Host header.
    public var publicURL: String?
    /// A session ends after this long without a request; capped at 30 minutes (docs/SECURITY.md R4).
    public var idleTimeout: TimeInterval
    /// A session ends this long after sign-in whatever happens; capped at 12 hours.
    public var absoluteTimeout: TimeInterval
    /// bcrypt cost for new hashes; never below 12 outside tests (R7). Stored hashes of a lower cost are redone at sign-in.
    public var passwordCost: Int
    /// Failed sign-ins allowed per account, and per client address, in any hour (R8).
    public var failuresPerAccountPerHour: Int
    public var failuresPerAddressPerHour: Int
    /// A screening lets a session start for this many days (default 30).
    public var screeningValidDays: Int
    /// Addresses and CIDR networks of the reverse proxies in front of Dermis (`DERMIS_TRUSTED_PROXIES`); only requests
    /// from these may name the client in `X-Forwarded-For`. Checked at start.
    public var trustedProxies: String?
    /// The key that encrypts secrets at rest (`DERMIS_SECRET_KEY_FILE`); `<data dir>/secret.key` when nil.
    public var secretKeyFile: String?
    /// E-mail out: `smtp://user:pass@host:587` (STARTTLS) or `smtps://…:465` (`DERMIS_SMTP_URL`), the sender
    /// (`DERMIS_MAIL_FROM`) and a private CA to trust (`DERMIS_SMTP_CA_FILE`). Without a URL, messages wait in the outbox.
    public var smtpURL: String?
    public var mailFrom: String?
    public var smtpCAFile: String?
    /// Text messages out through an HTTP provider (`DERMIS_SMS_URL`, `DERMIS_SMS_FROM`, `DERMIS_SMS_USER`,
    /// `DERMIS_SMS_PASSWORD`). Without a URL, text messages wait in the outbox.
    public var smsURL: String?
    public var smsFrom: String?
    public var smsUser: String?
    public var smsPassword: String?
    /// A translation of the patient pages' text catalogue (`DERMIS_PATIENT_TEXT_FILE`): JSON, the same keys.
    public var patientTextFile: String?
    /// Re-read templates on every render (`DERMIS_RELOAD_TEMPLATES=1`), for editing them; off, they are parsed once.
    public var reloadTemplates: Bool = false
    /// The bearer token a Prometheus scraper sends to `GET /metrics` (`DERMIS_METRICS_TOKEN`); unset, no metrics page.
    public var metricsToken: String?
    /// Card payments through a provider's hosted checkout (deposits): its API base URL (`DERMIS_PAYMENTS_URL`, a
    /// Stripe-compatible API), its secret API key (`DERMIS_PAYMENTS_SECRET`) and the secret its webhooks are signed with
    /// (`DERMIS_PAYMENTS_WEBHOOK_SECRET`). Without a URL no deposit is taken online. Card data never reaches Dermis.
    public var paymentsURL: String? = nil
    public var paymentsSecret: String? = nil
    public var paymentsWebhookSecret: String? = nil
    /// Scheduled backups while serving (SQLite only): the folder that holds them (`DERMIS_BACKUP_DIR`), every how many
    /// hours (`DERMIS_BACKUP_HOURS`, default 24) and how many to keep (`DERMIS_BACKUP_KEEP`, default 7). Checked at
    /// start by `BackupSchedule.configure`.
    public var backupDirectory: String?
    public var backupHours: String?
    public var backupKeep: String?
    /// Fills the demo clinic's staff passwords; random unless a test fixes them.
    public var randomPassword: @Sendable () -> String

    public static let maximumIdleTimeout: TimeInterval = 30 * 60
    public static let maximumAbsoluteTimeout: TimeInterval = 12 * 3600

    public init(dataDirectory: String = "./data", databaseURL: String? = nil, protocolFile: String? = nil,
                seedDemo: Bool = false, clock: any Clock = SystemClock(), secureCookies: Bool = false, publicURL: String? = nil,
                idleTimeout: TimeInterval = maximumIdleTimeout, absoluteTimeout: TimeInterval = maximumAbsoluteTimeout,
                passwordCost: Int = 12, failuresPerAccountPerHour: Int = 100, failuresPerAddressPerHour: Int = 300,
                screeningValidDays: Int = 30, trustedProxies: String? = nil, tlsCertificateFile: String? = nil,
                tlsKeyFile: String? = nil, secretKeyFile: String? = nil, smtpURL: String? = nil, mailFrom: String? = nil,
                smtpCAFile: String? = nil, smsURL: String? = nil, smsFrom: String? = nil, smsUser: String? = nil, smsPassword: String? = nil,
                reloadTemplates: Bool = false, metricsToken: String? = nil,
                backupDirectory: String? = nil, backupHours: String? = nil, backupKeep: String? = nil, patientTextFile: String? = nil,
                randomPassword: @escaping @Sendable () -> String = Secrets.password) {
        self.dataDirectory = dataDirectory
        self.databaseURL = databaseURL
        self.protocolFile = protocolFile
        self.seedDemo = seedDemo
        self.clock = clock
        self.secureCookies = secureCookies
        self.publicURL = publicURL
        self.patientTextFile = patientTextFile
        self.idleTimeout = min(idleTimeout, Self.maximumIdleTimeout)
        self.absoluteTimeout = min(absoluteTimeout, Self.maximumAbsoluteTimeout)
        self.passwordCost = passwordCost
        self.failuresPerAccountPerHour = failuresPerAccountPerHour
        self.failuresPerAddressPerHour = failuresPerAddressPerHour
        self.screeningValidDays = screeningValidDays
        self.trustedProxies = trustedProxies
        self.secretKeyFile = secretKeyFile
        self.smtpURL = smtpURL
        self.mailFrom = mailFrom
        self.smtpCAFile = smtpCAFile
        self.smsURL = smsURL
        self.smsFrom = smsFrom
        self.smsUser = smsUser
        self.smsPassword = smsPassword
        self.reloadTemplates = reloadTemplates
        self.metricsToken = metricsToken
        self.backupDirectory = backupDirectory
        self.backupHours = backupHours
        self.backupKeep = backupKeep
        self.tlsCertificateFile = tlsCertificateFile
        self.tlsKeyFile = tlsKeyFile
        self.randomPassword = randomPassword
    }

    /// Settings from the environment (`DERMIS_DATA_DIR`, `DATABASE_URL`, `DERMIS_PROTOCOL_FILE`); flags override them.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> DermisSettings {
        var settings = DermisSettings(
            dataDirectory: environment["DERMIS_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./data",
            databaseURL: environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 },
            protocolFile: environment["DERMIS_PROTOCOL_FILE"].flatMap { $0.isEmpty ? nil : $0 },
            secureCookies: ["1", "true", "yes"].contains(environment["DERMIS_SECURE_COOKIES"]?.lowercased() ?? ""),
            publicURL: environment["DERMIS_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : String($0.trimmingSuffix("/")) },
            idleTimeout: environment["DERMIS_IDLE_TIMEOUT_MINUTES"].flatMap(Double.init).map { $0 * 60 } ?? maximumIdleTimeout,
            absoluteTimeout: environment["DERMIS_SESSION_HOURS"].flatMap(Double.init).map { $0 * 3600 } ?? maximumAbsoluteTimeout,
            screeningValidDays: environment["DERMIS_SCREENING_VALID_DAYS"].flatMap(Int.init).map { max(1, $0) } ?? 30,
            trustedProxies: environment[TrustedProxies.variable],
            tlsCertificateFile: environment["DERMIS_TLS_CERT"].flatMap { $0.isEmpty ? nil : $0 },
            tlsKeyFile: environment["DERMIS_TLS_KEY"].flatMap { $0.isEmpty ? nil : $0 },
            secretKeyFile: environment[SecretBox.variable].flatMap { $0.isEmpty ? nil : $0 },
            smtpURL: environment["DERMIS_SMTP_URL"].flatMap { $0.isEmpty ? nil : $0 },
            mailFrom: environment["DERMIS_MAIL_FROM"].flatMap { $0.isEmpty ? nil : $0 },
            smtpCAFile: environment["DERMIS_SMTP_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 },
            smsURL: environment["DERMIS_SMS_URL"].flatMap { $0.isEmpty ? nil : $0 },
            smsFrom: environment["DERMIS_SMS_FROM"].flatMap { $0.isEmpty ? nil : $0 },
            smsUser: environment["DERMIS_SMS_USER"].flatMap { $0.isEmpty ? nil : $0 },
            smsPassword: environment["DERMIS_SMS_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 },
            reloadTemplates: ["1", "true", "yes"].contains(environment["DERMIS_RELOAD_TEMPLATES"]?.lowercased() ?? ""),
            metricsToken: environment["DERMIS_METRICS_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
            backupDirectory: environment["DERMIS_BACKUP_DIR"].flatMap { $0.isEmpty ? nil : $0 },
            backupHours: environment["DERMIS_BACKUP_HOURS"].flatMap { $0.isEmpty ? nil : $0 },
            backupKeep: environment["DERMIS_BACKUP_KEEP"].flatMap { $0.isEmpty ? nil : $0 },
            patientTextFile: environment["DERMIS_PATIENT_TEXT_FILE"].flatMap { $0.isEmpty ? nil : $0 })
        settings.paymentsURL = environment["DERMIS_PAYMENTS_URL"].flatMap { $0.isEmpty ? nil : $0 }
        settings.paymentsSecret = environment["DERMIS_PAYMENTS_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        settings.paymentsWebhookSecret = environment["DERMIS_PAYMENTS_WEBHOOK_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        return settings
    }

    /// Whether Dermis itself serves HTTPS.
    public var servesHTTPS: Bool { tlsCertificateFile != nil }

    /// `Secure` / `__Host-` cookies: by default whenever people reach Dermis over HTTPS — it serves TLS itself, or its
    /// public address is https — or when asked to.
    public var usesSecureCookies: Bool { secureCookies || servesHTTPS || (publicURL?.lowercased().hasPrefix("https://") ?? false) }

    /// Where the secret key file is.
    var secretKeyPath: String {
        secretKeyFile ?? URL(fileURLWithPath: dataDirectory).appendingPathComponent("secret.key").path
    }

    /// The protocol this server runs on: the override file when set, else the bundled one. Refuses an invalid file.
    public func loadProtocol() throws -> ClinicalProtocol {
        guard let protocolFile else { return .bundled }
        do {
            guard let data = FileManager.default.contents(atPath: protocolFile) else {
                throw InvalidInput(path: "", problem: "the file cannot be read")
            }
            return try ClinicalProtocol.load(from: data)
        } catch let error as InvalidInput {
            throw ProtocolFileError(path: protocolFile, invalid: error)
        }
    }
}

/// A clinic's protocol file that cannot be used, naming each field and problem.
public struct ProtocolFileError: Error, CustomStringConvertible {
    public let path: String
    public let invalid: InvalidInput

    public var description: String {
        "The protocol file \(path) is invalid:\n" + invalid.issues.map { "  \($0)" }.joined(separator: "\n")
    }
}

extension String {
    func trimmingSuffix(_ suffix: Character) -> Substring {
        var text = Substring(self)
        while text.last == suffix { text = text.dropLast() }
        return text
    }
}
