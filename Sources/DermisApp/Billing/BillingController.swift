import DermisCore
import Fluent
import Foundation
import Vapor

/// The money pages. Admins set the currency, whether prices include tax, the default tax rate, each service's price and
/// rate, and the deposit policy for online bookings (`/admin/billing`). Staff issue invoices from a patient's services,
/// print them, record cash and card-terminal payments, give refunds as credit notes, and give back a deposit
/// (`/invoices`). Admins export invoices, payments and refunds as CSV for the accountant. Nothing is edited after
/// issue; every page and change is audited.
struct BillingController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let admin = AccessRule.staff(AccessRule.admins)
        let staff = AccessRule.staff(AccessRule.anyStaff, audits: "Invoice")
        routes.get("admin", "billing", use: settingsPage).access(admin)
        routes.post("admin", "billing", use: saveSettings).access(admin)
        routes.get("invoices", use: list).access(staff)
        routes.get("invoices", "export", ":file", use: export).access(admin)
        routes.get("invoices", "reports", use: reports).access(AccessRule.staff(AccessRule.admins, audits: "Patient"))
        routes.get("invoices", ":invoiceID", use: show).access(staff)
        routes.post("invoices", ":invoiceID", "payments", use: pay).access(staff)
        routes.post("invoices", ":invoiceID", "refund", use: refund).access(staff)
        routes.get("patients", ":patientID", "invoices", "new", use: newInvoice).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
        routes.post("patients", ":patientID", "invoices", use: issue).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
        routes.post("deposits", ":depositID", "release", use: releaseDeposit).access(staff)
        routes.post("admin", "billing", "packages", use: addOffer).access(admin)
        routes.post("admin", "billing", "packages", ":offerID", "retire", use: retireOffer).access(admin)
        routes.post("patients", ":patientID", "packages", use: sellPackage).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
        routes.post("packages", ":packageID", "refund", use: refundPackage).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
        routes.post("admin", "billing", "memberships", use: addMembershipPlan).access(admin)
        routes.post("admin", "billing", "memberships", ":planID", "retire", use: retireMembershipPlan).access(admin)
        routes.post("patients", ":patientID", "memberships", use: join).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
        routes.post("memberships", ":membershipID", "cancel", use: cancelMembership).access(AccessRule.staff(AccessRule.anyStaff, audits: "Patient"))
    }

    // MARK: Settings

    struct ServiceRow: Encodable {
        let code: String
        let name: String
        let price: String
        let tax: String
    }

    struct SettingsPage: Encodable {
        let page: PageHeader
        let currencies: [Option]
        let pricesIncludeTax: Bool
        let defaultTax: String
        let deposit: String
        let noticeHours: String
        let services: [ServiceRow]
        let paymentsConfigured: Bool
        let locked: Bool
        let saved: Bool
        let errors: [ErrorLine]
        let refundRules: [Option]
        let offers: [OfferRow]
        let offerServices: [Option]
        let indications: [Option]
        let offerForm: [String: String]
        let membershipPlans: [Option]
    }

    struct OfferRow: Encodable {
        let id: String
        let name: String
        let service: String
        let indication: String
        let sessions: Int
        let price: String
        let validityDays: Int
        let active: Bool
    }

    private func renderSettings(_ req: Request, form: [String: String]?, errors: [ErrorLine], status: HTTPStatus = .ok,
                                offerForm: [String: String] = [:]) async throws -> Response {
        let staff = try req.staff()
        let billing = try await InvoiceStore(db: req.db, clinicID: staff.clinicID).billing()
        let code = form?["currency"] ?? billing?.currency ?? "GBP"
        let currency = Currency(code) ?? Currency("GBP")!
        let services = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$name).all()
        let issued = try await Invoice.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).count()
        return try await req.view.render("billing-admin", SettingsPage(
            page: try await PageHeader(req, title: "Billing"),
            currencies: Currency.knownCodes.map { Option(id: $0, name: $0, selected: $0 == code) },
            pricesIncludeTax: form.map { $0["pricesIncludeTax"] == "on" } ?? billing?.pricesIncludeTax ?? true,
            defaultTax: form?["defaultTax"] ?? billing?.defaultTaxBasisPoints.flatMap { TaxRate(basisPoints: $0)?.percentText } ?? "0",
            deposit: form?["deposit"] ?? billing?.depositAmount.map { currency.format($0) } ?? "",
            noticeHours: form?["noticeHours"] ?? billing?.noticeHours.map(String.init) ?? "48",
            services: services.map { service in
                ServiceRow(code: service.code, name: service.name,
                           price: form?["price.\(service.code)"] ?? service.priceMinor.map { currency.format($0) } ?? "",
                           tax: form?["tax.\(service.code)"] ?? service.taxBasisPoints.flatMap { TaxRate(basisPoints: $0)?.percentText } ?? "")
            },
            paymentsConfigured: req.application.payments != nil, locked: issued > 0,
            saved: (try? req.query.get(String.self, at: "saved")) == "1", errors: errors,
            refundRules: PackageRefundRule.allCases.map { rule in
                Option(id: rule.rawValue, name: rule.words, selected: rule.rawValue == (form?["packageRefundRule"] ?? billing?.packageRefundRule ?? PackageRefundRule.proRata.rawValue))
            },
            offers: try await PackageOffer.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$createdAt).all().map { offer in
                OfferRow(id: offer.id!.uuidString, name: offer.name, service: services.first { $0.id == offer.$service.id }?.name ?? "",
                         indication: offer.indication.flatMap { id in req.dermis.clinicalProtocol.indications.first { $0.id == id }?.displayName } ?? "any",
                         sessions: offer.sessions, price: "\(currency.code) \(currency.format(offer.price))", validityDays: offer.validityDays, active: offer.active)
            },
            offerServices: services.filter(\.isTreatment).map { Option(id: $0.code, name: $0.name, selected: $0.code == offerForm["service"]) },
            indications: [Option(id: "", name: "Any indication", selected: (offerForm["indication"] ?? "").isEmpty)]
                + req.dermis.clinicalProtocol.indications.map { Option(id: $0.id, name: $0.displayName, selected: $0.id == offerForm["indication"]) },
            offerForm: offerForm,
            membershipPlans: try await MembershipPlan.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$createdAt).all().map { plan in
                Option(id: plan.id!.uuidString, name: Self.planWords(plan, currency), selected: plan.active)
            })).response(status, for: req)
    }

    func settingsPage(req: Request) async throws -> Response {
        try await renderSettings(req, form: nil, errors: [])
    }

    func saveSettings(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode([String: String].self)
        let now = req.dermis.clock.now()
        do {
            try await req.audited(.update, objectType: "ClinicBilling", objectID: staff.clinicID.uuidString) {
                var issues: [FieldIssue] = []
                guard let currency = Currency(form["currency"] ?? "") else {
                    throw InvalidInput(path: "currency", problem: "choose an ISO 4217 currency Dermis bills in")
                }
                func rate(_ field: String, optional: Bool) -> TaxRate? {
                    let text = (form[field] ?? "").trimmingCharacters(in: .whitespaces)
                    if text.isEmpty && optional { return nil }
                    guard let rate = TaxRate(percent: text) else {
                        issues.append(FieldIssue(path: field, problem: "must be a percentage from 0 to 100 with at most two decimals, e.g. 20 or 5.5"))
                        return nil
                    }
                    return rate
                }
                func amount(_ field: String) -> Int64? {
                    let text = (form[field] ?? "").trimmingCharacters(in: .whitespaces)
                    if text.isEmpty { return nil }
                    guard let minor = currency.parse(text), minor <= InvoiceTotals.maximumUnitPrice else {
                        issues.append(FieldIssue(path: field, problem: "must be an amount in \(currency.code) with at most \(currency.minorDigits) decimals, e.g. \(currency.format(currency.minorPerMajor * 150))"))
                        return nil
                    }
                    return minor
                }
                let defaultRate = rate("defaultTax", optional: false)
                let refundRule = PackageRefundRule(rawValue: form["packageRefundRule"] ?? PackageRefundRule.proRata.rawValue) ?? {
                    issues.append(FieldIssue(path: "packageRefundRule", problem: "must be one of \(PackageRefundRule.allCases.map(\.rawValue).joined(separator: ", "))"))
                    return .proRata
                }()
                let deposit = amount("deposit")
                let noticeText = (form["noticeHours"] ?? "").trimmingCharacters(in: .whitespaces)
                let notice = Int(noticeText)
                if notice == nil || !(0...DepositPolicy.maximumNoticeHours).contains(notice!) {
                    issues.append(FieldIssue(path: "noticeHours", problem: "must be whole hours from 0 to \(DepositPolicy.maximumNoticeHours)"))
                }
                let services = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all()
                var prices: [(Service, Int64?, TaxRate?)] = []
                for service in services {
                    prices.append((service, amount("price.\(service.code)"), rate("tax.\(service.code)", optional: true)))
                }
                if !issues.isEmpty { throw InvalidInput(issues) }
                let billing = try await InvoiceStore(db: req.db, clinicID: staff.clinicID)
                    .configure(currency: currency.code, pricesIncludeTax: form["pricesIncludeTax"] == "on", at: now)
                billing.defaultTaxBasisPoints = defaultRate?.basisPoints
                billing.packageRefundRule = refundRule.rawValue
                billing.depositAmount = deposit
                billing.noticeHours = notice
                try await billing.save(on: req.db)
                for (service, price, rate) in prices {
                    service.priceMinor = price
                    service.taxBasisPoints = rate?.basisPoints
                    try await service.save(on: req.db)
                }
            }
        } catch let invalid as InvalidInput {
            return try await renderSettings(req, form: form, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderSettings(req, form: form, errors: [ErrorLine(field: "currency", message: abort.reason)], status: .conflict)
        }
        return req.redirect(to: "/admin/billing?saved=1", redirectType: .normal)
    }

    // MARK: Invoices

    struct InvoiceRow: Encodable {
        let id: String
        let number: String
        let kind: String
        let issued: String
        let billedTo: String
        let gross: String
        let due: String
    }

    struct DepositRow: Encodable {
        let id: String
        let invoiceID: String?
        let amount: String
        let status: String
        let outcome: String
        let problem: String
        let canRelease: Bool
    }

    struct ListPage: Encodable {
        let page: PageHeader
        let invoices: [InvoiceRow]
        let deposits: [DepositRow]
        let configured: Bool
    }

    static func planWords(_ plan: MembershipPlan, _ currency: Currency?) -> String {
        var parts = ["\(plan.name): " + (currency.map { "\($0.code) \($0.format(plan.monthlyPrice))" } ?? "\(plan.monthlyPrice)") + " a month"]
        if plan.includedSessions > 0 { parts.append("\(plan.includedSessions) session\(plan.includedSessions == 1 ? "" : "s") included") }
        if plan.discountBasisPoints > 0 { parts.append("\(TaxRate(basisPoints: plan.discountBasisPoints)?.percentText ?? "") % off") }
        return parts.joined(separator: ", ")
    }

    static func number(_ invoice: Invoice) -> String {
        (invoice.kind == Invoice.creditNoteKind ? "CN-" : "INV-") + String(format: "%06d", invoice.number)
    }

    /// The clinic's own day of an instant (its first location's zone).
    private func dayFormatter(_ req: Request, clinic: UUID) async throws -> (Date) -> String {
        let zone = try await Location.query(on: req.db).filter(\.$clinic.$id == clinic).sort(\.$name).first()?.zone ?? TimeZone.gmt
        return { CalendarDate($0, in: zone).description }
    }

    private static func money(_ minor: Int64, _ code: String) -> String {
        Currency(code).map { "\($0.code) \($0.format(minor))" } ?? "\(minor)"
    }

    private func names(_ invoices: [Invoice], _ req: Request) async throws -> [UUID: String] {
        let ids = Set(invoices.compactMap(\.patientID))
        guard !ids.isEmpty else { return [:] }
        return Dictionary(uniqueKeysWithValues: try await Patient.query(on: req.db).filter(\.$id ~~ ids).all().map { ($0.id!, $0.fullName) })
    }

    func list(req: Request) async throws -> View {
        let staff = try req.staff()
        return try await req.audited(.search, objectType: "Invoice") {
            let store = InvoiceStore(db: req.db, clinicID: staff.clinicID)
            let invoices = try await Invoice.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$number, .descending).limit(100).all()
            let names = try await names(invoices, req)
            let day = try await dayFormatter(req, clinic: staff.clinicID)
            var rows: [InvoiceRow] = []
            for invoice in invoices {
                let due = invoice.kind == Invoice.invoiceKind ? try await store.standing(invoice).due(of: invoice) : 0
                rows.append(InvoiceRow(id: invoice.id!.uuidString, number: Self.number(invoice), kind: invoice.kind,
                                       issued: day(invoice.issuedAt), billedTo: invoice.patientID.flatMap { names[$0] } ?? invoice.billedTo ?? "—",
                                       gross: Self.money(invoice.gross, invoice.currency), due: Self.money(due, invoice.currency)))
            }
            let deposits = try await Deposit.query(on: req.db).filter(\.$clinic.$id == staff.clinicID)
                .filter(\.$status ~~ [DepositStatus.held.rawValue, DepositStatus.releaseDue.rawValue, DepositStatus.kept.rawValue])
                .sort(\.$updatedAt, .descending).limit(100).all()
            return try await req.view.render("invoices", ListPage(
                page: try await PageHeader(req, title: "Invoices"), invoices: rows,
                deposits: deposits.map { d in
                    DepositRow(id: d.id!.uuidString, invoiceID: d.invoiceID?.uuidString, amount: Self.money(d.amount, d.currency), status: d.status,
                               outcome: d.outcome ?? "", problem: d.lastError ?? "", canRelease: [.held, .kept].contains(d.depositStatus))
                },
                configured: try await store.billing() != nil))
        }
    }

    struct LineRow: Encodable {
        let description: String
        let quantity: Int
        let unitPrice: String
        let rate: String
        let net: String
        let tax: String
        let gross: String
    }

    struct MoneyRow: Encodable {
        let when: String
        let what: String
        let method: String
        let amount: String
        let reference: String
        let link: String?
    }

    struct InvoicePage: Encodable {
        let page: PageHeader
        let id: String
        let number: String
        let isCreditNote: Bool
        let credits: String?
        let creditsLink: String?
        let clinicName: String
        let issued: String
        let billedTo: String
        let patientLink: String?
        let lines: [LineRow]
        let rates: [LineRow]
        let net: String
        let tax: String
        let gross: String
        let pricesIncludeTax: Bool
        let roundingRule: String
        let reason: String?
        let money: [MoneyRow]
        let due: String
        let dueMinor: Int64
        let paidMinor: Int64
        let deposit: String?
        let errors: [ErrorLine]
        let methods: [Option]
        /// Refunded here (not a deposit's, not an active package's: those have their own way back).
        let refundable: Bool
    }

    private func invoice(_ req: Request) async throws -> Invoice {
        let staff = try req.staff()
        let id = try req.uuidParameter("invoiceID", notFound: "No such invoice.")
        guard let invoice = try await Invoice.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
            throw Abort(.notFound, reason: "No such invoice.")
        }
        return invoice
    }

    private func renderInvoice(_ req: Request, _ invoice: Invoice, errors: [ErrorLine], status: HTTPStatus = .ok) async throws -> Response {
        let staff = try req.staff()
        let store = InvoiceStore(db: req.db, clinicID: staff.clinicID)
        let code = invoice.currency
        let lines = try invoice.decodedLines
        let totals = try invoice.decodedLineTotals
        let clinic = try await Clinic.require(staff.clinicID, on: req.db)
        let day = try await dayFormatter(req, clinic: staff.clinicID)
        let patient = try await invoice.patientID.asyncMap { try await Patient.find($0, on: req.db) } ?? nil
        var money: [MoneyRow] = []
        var due: Int64 = 0
        var paid: Int64 = 0
        var credits: Invoice?
        if invoice.kind == Invoice.invoiceKind {
            let standing = try await store.standing(invoice)
            due = standing.due(of: invoice)
            paid = standing.paid - standing.refunded
            money = standing.payments.map {
                MoneyRow(when: day($0.recordedAt), what: "Payment", method: $0.method, amount: Self.money($0.amount, code),
                         reference: $0.reference ?? "", link: nil)
            } + standing.notes.map {
                MoneyRow(when: day($0.issuedAt), what: "Credit note \(Self.number($0))", method: "", amount: Self.money($0.gross, code),
                         reference: $0.reason ?? "", link: "/invoices/\($0.id!)")
            } + standing.refunds.map {
                MoneyRow(when: day($0.recordedAt), what: "Refund", method: $0.method, amount: Self.money($0.amount, code),
                         reference: $0.reference ?? "", link: nil)
            }
        } else {
            credits = try await invoice.creditsInvoiceID.asyncMap { try await Invoice.find($0, on: req.db) } ?? nil
            money = try await InvoicePayment.query(on: req.db).filter(\.$invoiceID == invoice.requireID()).all().map {
                MoneyRow(when: day($0.recordedAt), what: "Refund", method: $0.method, amount: Self.money($0.amount, code),
                         reference: $0.reference ?? "", link: nil)
            }
        }
        let deposit = try await Deposit.query(on: req.db).group(.or) {
            $0.filter(\.$invoiceID == invoice.id).filter(\.$creditNoteID == invoice.id)
        }.first()
        let activePackages = try await PatientPackage.query(on: req.db).filter(\.$invoiceID == invoice.requireID()).filter(\.$status == "active").count()
        let refundable = deposit == nil && activePackages == 0
        var byRate: [Int: (Int64, Int64)] = [:]
        for (line, total) in zip(lines, totals) {
            byRate[line.taxRate.basisPoints, default: (0, 0)].0 += total.net
            byRate[line.taxRate.basisPoints, default: (0, 0)].1 += total.tax
        }
        return try await req.view.render("invoice", InvoicePage(
            page: try await PageHeader(req, title: Self.number(invoice)), id: invoice.id!.uuidString, number: Self.number(invoice),
            isCreditNote: invoice.kind == Invoice.creditNoteKind, credits: credits.map(Self.number), creditsLink: credits.map { "/invoices/\($0.id!)" },
            clinicName: clinic.name, issued: day(invoice.issuedAt),
            billedTo: patient.map { "\($0.fullName) (\($0.mrn))" } ?? invoice.billedTo ?? "—",
            patientLink: patient.map { "/patients/\($0.id!)" },
            lines: zip(lines, totals).map { line, total in
                LineRow(description: line.description, quantity: line.quantity, unitPrice: Self.money(line.unitPrice, code),
                        rate: line.taxRate.percentText + " %", net: Self.money(total.net, code), tax: Self.money(total.tax, code),
                        gross: Self.money(total.gross, code))
            },
            rates: byRate.keys.sorted().map { bp in
                LineRow(description: "", quantity: 0, unitPrice: "", rate: (TaxRate(basisPoints: bp)?.percentText ?? "\(bp)") + " %",
                        net: Self.money(byRate[bp]!.0, code), tax: Self.money(byRate[bp]!.1, code), gross: "")
            },
            net: Self.money(invoice.net, code), tax: Self.money(invoice.tax, code), gross: Self.money(invoice.gross, code),
            pricesIncludeTax: invoice.pricesIncludeTax, roundingRule: InvoiceTotals.roundingRule, reason: invoice.reason, money: money,
            due: Self.money(due, code), dueMinor: due, paidMinor: paid,
            deposit: deposit.map { "Deposit for an online booking: \($0.status)\($0.outcome.map { ". \($0)" } ?? "")" },
            errors: errors, methods: [Option(id: "cash", name: "Cash", selected: true), Option(id: "card-terminal", name: "Card terminal", selected: false)],
            refundable: refundable))
            .response(status, for: req)
    }

    func show(req: Request) async throws -> Response {
        let invoice = try await invoice(req)
        return try await req.audited(.read, objectType: "Invoice", objectID: invoice.id?.uuidString, patientID: invoice.patientID) {
            try await renderInvoice(req, invoice, errors: [])
        }
    }

    struct PaymentForm: Content {
        var amount: String?
        var method: String?
        var reference: String?
        var reason: String?
    }

    private func amount(_ text: String?, _ invoice: Invoice) throws -> Int64 {
        guard let currency = Currency(invoice.currency), let minor = currency.parse(text ?? ""), minor > 0 else {
            throw InvalidInput(path: "amount", problem: "must be an amount in \(invoice.currency) more than 0, e.g. 45.00")
        }
        return minor
    }

    func pay(req: Request) async throws -> Response {
        let staff = try req.staff()
        let invoice = try await invoice(req)
        let form = try req.content.decode(PaymentForm.self)
        do {
            _ = try await req.audited(.create, objectType: "InvoicePayment", objectID: invoice.id?.uuidString, patientID: invoice.patientID) {
                try await InvoiceStore(db: req.db, clinicID: staff.clinicID)
                    .pay(try invoice.requireID(), amount: try amount(form.amount, invoice), method: form.method ?? "", reference: form.reference,
                         by: staff.userID, at: req.dermis.clock.now())
            }
        } catch let invalid as InvalidInput {
            return try await renderInvoice(req, invoice, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        }
        return req.redirect(to: "/invoices/\(invoice.id!)", redirectType: .normal)
    }

    func refund(req: Request) async throws -> Response {
        let staff = try req.staff()
        let invoice = try await invoice(req)
        let form = try req.content.decode(PaymentForm.self)
        do {
            let note = try await req.audited(.create, objectType: "Invoice", objectID: invoice.id?.uuidString, patientID: invoice.patientID) {
                try await InvoiceStore(db: req.db, clinicID: staff.clinicID)
                    .refund(try invoice.requireID(), amount: try amount(form.amount, invoice), reason: form.reason ?? "", method: form.method ?? "",
                            by: staff.userID, at: req.dermis.clock.now())
            }
            return req.redirect(to: "/invoices/\(note.id!)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderInvoice(req, invoice, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where [.conflict, .notFound].contains(abort.status) {
            return try await renderInvoice(req, invoice, errors: [ErrorLine(field: "amount", message: abort.reason)], status: abort.status)
        }
    }

    // MARK: A new invoice from a patient's services

    struct NewPage: Encodable {
        let page: PageHeader
        let patientID: String
        let patientName: String
        let services: [Option]
        let rows: [Int]
        let configured: Bool
        let errors: [ErrorLine]
        let offers: [Option]
        let planSessions: Int?
        let packages: [PackageLine]
        let refundRule: String
        let memberships: [Memberships.Line]
        let membershipPlans: [Option]
        let today: String
        let practitioners: [Option]
    }

    private func renderNew(_ req: Request, _ patient: Patient, errors: [ErrorLine], status: HTTPStatus = .ok) async throws -> Response {
        let staff = try req.staff()
        let billing = try await InvoiceStore(db: req.db, clinicID: staff.clinicID).billing()
        let currency = billing.flatMap { Currency($0.currency) }
        let services = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$name).all().filter { $0.priceMinor != nil }
        return try await req.view.render("invoice-new", NewPage(
            page: try await PageHeader(req, title: "Invoices and packages"), patientID: patient.id!.uuidString, patientName: patient.fullName,
            services: services.map { service in
                Option(id: service.code, name: "\(service.name) — " + (currency.map { "\($0.code) \($0.format(service.priceMinor ?? 0))" } ?? ""), selected: false)
            },
            rows: [0, 1, 2], configured: billing != nil, errors: errors,
            offers: try await PackageOffer.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$active == true).sort(\.$name).all().map { offer in
                Option(id: offer.id!.uuidString, name: "\(offer.name) — \(offer.sessions) sessions, " + (currency.map { "\($0.code) \($0.format(offer.price))" } ?? "")
                       + ", valid \(offer.validityDays) days", selected: false)
            },
            planSessions: try await TreatmentPlanRecord.query(on: req.db).filter(\.$patient.$id == patient.requireID()).sort(\.$version, .descending)
                .first()?.plan.series.sessions,
            packages: Self.packageLines(try await Packages(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now()).standings(patientID: patient.requireID()),
                                        today: req.today(in: try await req.clinic())),
            refundRule: (PackageRefundRule(rawValue: billing?.packageRefundRule ?? "") ?? .proRata).words,
            memberships: try await Memberships(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now()).lines(patientID: patient.requireID()),
            membershipPlans: try await MembershipPlan.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$active == true).sort(\.$name).all().map { plan in
                Option(id: plan.id!.uuidString, name: Self.planWords(plan, currency), selected: false)
            },
            today: req.today(in: try await req.clinic()).description,
            practitioners: [Option(id: "", name: "—", selected: true)] + (try await StaffUser.query(on: req.db).filter(\.$clinic.$id == staff.clinicID)
                .filter(\.$role == StaffRole.practitioner.rawValue).sort(\.$name).all()).map { Option(id: $0.id!.uuidString, name: $0.name, selected: false) }))
            .response(status, for: req)
    }

    func newInvoice(req: Request) async throws -> Response {
        let patient = try await req.patient()
        return try await renderNew(req, patient, errors: [])
    }

    struct IssueForm: Content {
        var service: [String]?
        var quantity: [String]?
        /// Who gave the services (for the revenue report); optional.
        var practitioner: String?
    }

    func issue(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let form = try req.content.decode(IssueForm.self)
        do {
            let invoice = try await req.audited(.create, objectType: "Invoice", patientID: patient.id) {
                let store = InvoiceStore(db: req.db, clinicID: staff.clinicID)
                guard let billing = try await store.billing() else {
                    throw DomainError.conflict("The clinic has no currency set yet: an admin chooses it under billing first.")
                }
                let services = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).all()
                var lines: [InvoiceLine] = []
                var issues: [FieldIssue] = []
                var practitioner: UUID?
                if let text = form.practitioner, !text.isEmpty {
                    guard let id = UUID(uuidString: text), try await StaffUser.query(on: req.db).filter(\.$id == id)
                        .filter(\.$clinic.$id == staff.clinicID).filter(\.$role == StaffRole.practitioner.rawValue).first() != nil else {
                        throw InvalidInput(path: "practitioner", problem: "is not one of this clinic's practitioners")
                    }
                    practitioner = id
                }
                let chosen = form.service ?? []
                let quantities = form.quantity ?? []
                if chosen.count > 20 { throw InvalidInput(path: "service", problem: "at most 20 lines") }
                for (i, code) in chosen.enumerated() where !code.isEmpty {
                    guard let service = services.first(where: { $0.code == code }), let price = service.priceMinor else {
                        issues.append(FieldIssue(path: "service[\(i)]", problem: "'\(code.prefix(40))' is not a service with a price (an admin sets prices under billing)"))
                        continue
                    }
                    let text = quantities.indices.contains(i) ? quantities[i].trimmingCharacters(in: .whitespaces) : "1"
                    guard let quantity = Int(text.isEmpty ? "1" : text), (1...InvoiceTotals.maximumQuantity).contains(quantity) else {
                        issues.append(FieldIssue(path: "quantity[\(i)]", problem: "must be a whole number from 1 to \(InvoiceTotals.maximumQuantity)"))
                        continue
                    }
                    let rate = TaxRate(basisPoints: service.taxBasisPoints ?? billing.defaultTaxBasisPoints ?? 0) ?? .zero
                    // A member's discount is a lower unit price, said on the line.
                    let (charged, note) = try await Memberships(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now())
                        .memberPrice(price, patientID: patient.requireID())
                    lines.append(InvoiceLine(description: note.map { "\(service.name) (\($0))" } ?? service.name, quantity: quantity, unitPrice: charged,
                                             taxRate: rate, service: service.code, practitioner: practitioner?.uuidString))
                }
                if lines.isEmpty && issues.isEmpty { issues.append(FieldIssue(path: "service[0]", problem: "choose at least one service")) }
                if !issues.isEmpty { throw InvalidInput(issues) }
                return try await store.issue(lines, patientID: patient.id, billedTo: patient.fullName, by: staff.userID, at: req.dermis.clock.now())
            }
            return req.redirect(to: "/invoices/\(invoice.id!)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderNew(req, patient, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderNew(req, patient, errors: [ErrorLine(field: "service[0]", message: abort.reason)], status: .conflict)
        }
    }

    // MARK: Deposits

    struct ReleaseForm: Content {
        var reason: String?
    }

    func releaseDeposit(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("depositID", notFound: "No such deposit.")
        let form = try req.content.decode(ReleaseForm.self)
        do {
            try await req.audited(.update, objectType: "Deposit", objectID: id.uuidString) {
                try await Deposits(db: req.db, clinicID: staff.clinicID, provider: req.application.payments, now: req.dermis.clock.now())
                    .release(id, reason: form.reason ?? "", by: staff.name)
            }
        } catch let invalid as InvalidInput {
            throw Abort(.unprocessableEntity, reason: invalid.issues.map(\.description).joined(separator: "; "))
        }
        return req.redirect(to: "/invoices", redirectType: .normal)
    }

    // MARK: Packages

    func addOffer(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode([String: String].self)
        do {
            try await req.audited(.create, objectType: "PackageOffer") {
                var issues: [FieldIssue] = []
                guard let billing = try await InvoiceStore(db: req.db, clinicID: staff.clinicID).billing(), let currency = Currency(billing.currency) else {
                    throw InvalidInput(path: "currency", problem: "choose the clinic's currency first")
                }
                let name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                if name.isEmpty || name.count > 100 { issues.append(FieldIssue(path: "name", problem: "is required, at most 100 characters")) }
                let service = try await Service.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$code == (form["service"] ?? "")).first()
                if service?.isTreatment != true { issues.append(FieldIssue(path: "service", problem: "choose a treatment service")) }
                let indication = (form["indication"] ?? "").isEmpty ? nil : form["indication"]
                if let indication, !req.dermis.clinicalProtocol.indications.contains(where: { $0.id == indication }) {
                    issues.append(FieldIssue(path: "indication", problem: "is not an indication of the protocol"))
                }
                let sessions = Int((form["sessions"] ?? "").trimmingCharacters(in: .whitespaces))
                if sessions == nil || !(1...PackageOffer.maximumSessions).contains(sessions!) {
                    issues.append(FieldIssue(path: "sessions", problem: "must be a whole number from 1 to \(PackageOffer.maximumSessions)"))
                }
                let price = currency.parse(form["price"] ?? "")
                if price == nil || price! <= 0 || price! > InvoiceTotals.maximumUnitPrice {
                    issues.append(FieldIssue(path: "price", problem: "must be an amount in \(currency.code) more than 0, with at most \(currency.minorDigits) decimals"))
                }
                let validity = Int((form["validityDays"] ?? "").trimmingCharacters(in: .whitespaces))
                if validity == nil || !(1...PackageOffer.maximumValidityDays).contains(validity!) {
                    issues.append(FieldIssue(path: "validityDays", problem: "must be whole days from 1 to \(PackageOffer.maximumValidityDays)"))
                }
                if !issues.isEmpty { throw InvalidInput(issues) }
                let offer = PackageOffer()
                offer.$clinic.id = staff.clinicID
                offer.name = name
                offer.$service.id = try service!.requireID()
                offer.indication = indication
                offer.sessions = sessions!
                offer.price = price!
                offer.validityDays = validity!
                offer.active = true
                offer.createdAt = req.dermis.clock.now()
                try await offer.create(on: req.db)
            }
        } catch let invalid as InvalidInput {
            return try await renderSettings(req, form: nil, errors: ErrorLine.list(invalid), status: .unprocessableEntity, offerForm: form)
        }
        return req.redirect(to: "/admin/billing?saved=1#packages", redirectType: .normal)
    }

    func retireOffer(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("offerID", notFound: "No such package.")
        try await req.audited(.update, objectType: "PackageOffer", objectID: id.uuidString) {
            guard let offer = try await PackageOffer.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
                throw Abort(.notFound, reason: "No such package.")
            }
            offer.active = false
            try await offer.save(on: req.db)
        }
        return req.redirect(to: "/admin/billing#packages", redirectType: .normal)
    }

    struct SellForm: Content {
        var offer: String?
        var fitPlan: String?
    }

    func sellPackage(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let form = try req.content.decode(SellForm.self)
        do {
            let package = try await req.audited(.create, objectType: "PatientPackage", patientID: patient.id) {
                guard let id = form.offer.flatMap(UUID.init(uuidString:)),
                      let offer = try await PackageOffer.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
                    throw InvalidInput(path: "offer", problem: "choose a package")
                }
                var sessions: Int?
                if form.fitPlan == "on" {
                    guard let plan = try await TreatmentPlanRecord.query(on: req.db).filter(\.$patient.$id == patient.requireID())
                        .sort(\.$version, .descending).first()?.plan else {
                        throw InvalidInput(path: "fitPlan", problem: "the patient has no treatment plan to size the package to")
                    }
                    sessions = plan.series.sessions
                }
                return try await Packages(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now())
                    .sell(offer, to: patient, sessions: sessions, today: req.today(in: try await req.clinic()), by: staff.userID)
            }
            return req.redirect(to: "/invoices/\(package.invoiceID)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderNew(req, patient, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderNew(req, patient, errors: [ErrorLine(field: "offer", message: abort.reason)], status: .conflict)
        }
    }

    func refundPackage(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("packageID", notFound: "No such package.")
        guard let package = try await PatientPackage.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
            throw Abort(.notFound, reason: "No such package.")
        }
        let patient = try await Patient.require(package.$patient.id, on: req.db)
        let form = try req.content.decode(PaymentForm.self)
        do {
            let (_, note) = try await req.audited(.update, objectType: "PatientPackage", objectID: id.uuidString, patientID: patient.id) {
                try await Packages(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now())
                    .refund(id, method: form.method ?? "", reason: form.reason ?? "", by: staff.userID)
            }
            return req.redirect(to: "/invoices/\(note.id!)", redirectType: .normal)
        } catch let invalid as InvalidInput {
            return try await renderNew(req, patient, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderNew(req, patient, errors: [ErrorLine(field: "package", message: abort.reason)], status: .conflict)
        }
    }

    /// A patient's packages as staff and the patient see them: sessions left and the last day.
    struct PackageLine: Encodable {
        let id: String
        let name: String
        let left: Int
        let sessions: Int
        let expiresOn: String
        let state: String
        let canRefund: Bool
    }

    static func packageLines(_ standings: [PackageStanding], today: CalendarDate) -> [PackageLine] {
        standings.map { s in
            let expired = s.expired(on: today)
            return PackageLine(id: s.package.id!.uuidString, name: s.package.name, left: s.left, sessions: s.package.sessions, expiresOn: s.package.expiresOn,
                               state: s.package.status == "refunded" ? "refunded" : expired ? "expired" : s.left == 0 ? "used" : "active",
                               canRefund: s.package.status == "active" && s.left > 0)
        }
    }

    // MARK: Memberships

    func addMembershipPlan(req: Request) async throws -> Response {
        let staff = try req.staff()
        let form = try req.content.decode([String: String].self)
        do {
            try await req.audited(.create, objectType: "MembershipPlan") {
                var issues: [FieldIssue] = []
                guard let billing = try await InvoiceStore(db: req.db, clinicID: staff.clinicID).billing(), let currency = Currency(billing.currency) else {
                    throw InvalidInput(path: "currency", problem: "choose the clinic's currency first")
                }
                let name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                if name.isEmpty || name.count > 100 { issues.append(FieldIssue(path: "name", problem: "is required, at most 100 characters")) }
                let price = currency.parse(form["monthlyPrice"] ?? "")
                if price == nil || price! <= 0 || price! > InvoiceTotals.maximumUnitPrice {
                    issues.append(FieldIssue(path: "monthlyPrice", problem: "must be an amount in \(currency.code) more than 0, with at most \(currency.minorDigits) decimals"))
                }
                let included = Int((form["includedSessions"] ?? "0").trimmingCharacters(in: .whitespaces).isEmpty ? "0" : (form["includedSessions"] ?? "0"))
                if included == nil || !(0...10).contains(included!) { issues.append(FieldIssue(path: "includedSessions", problem: "must be a whole number from 0 to 10")) }
                let discountText = (form["discount"] ?? "").trimmingCharacters(in: .whitespaces)
                let discount = discountText.isEmpty ? TaxRate.zero : TaxRate(percent: discountText)
                if discount == nil || discount!.basisPoints > 5000 { issues.append(FieldIssue(path: "discount", problem: "must be a percentage from 0 to 50, e.g. 10 or 12.5")) }
                if issues.isEmpty && included == 0 && discount?.basisPoints == 0 {
                    issues.append(FieldIssue(path: "includedSessions", problem: "a membership includes sessions, a discount, or both"))
                }
                if !issues.isEmpty { throw InvalidInput(issues) }
                let plan = MembershipPlan()
                plan.$clinic.id = staff.clinicID
                plan.name = name
                plan.monthlyPrice = price!
                plan.includedSessions = included!
                plan.discountBasisPoints = discount!.basisPoints
                plan.active = true
                plan.createdAt = req.dermis.clock.now()
                try await plan.create(on: req.db)
            }
        } catch let invalid as InvalidInput {
            return try await renderSettings(req, form: nil, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        }
        return req.redirect(to: "/admin/billing?saved=1#memberships", redirectType: .normal)
    }

    func retireMembershipPlan(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("planID", notFound: "No such membership.")
        try await req.audited(.update, objectType: "MembershipPlan", objectID: id.uuidString) {
            guard let plan = try await MembershipPlan.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
                throw Abort(.notFound, reason: "No such membership.")
            }
            plan.active = false
            try await plan.save(on: req.db)
        }
        return req.redirect(to: "/admin/billing#memberships", redirectType: .normal)
    }

    struct JoinForm: Content {
        var plan: String?
        var startOn: String?
    }

    func join(req: Request) async throws -> Response {
        let staff = try req.staff()
        let patient = try await req.patient()
        let form = try req.content.decode(JoinForm.self)
        do {
            try await req.audited(.create, objectType: "Membership", patientID: patient.id) {
                guard let id = form.plan.flatMap(UUID.init(uuidString:)),
                      let plan = try await MembershipPlan.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
                    throw InvalidInput(path: "plan", problem: "choose a membership")
                }
                let today = req.today(in: try await req.clinic())
                let text = (form.startOn ?? "").trimmingCharacters(in: .whitespaces)
                guard let start = text.isEmpty ? today : CalendarDate(iso: text) else { throw InvalidInput(path: "startOn", problem: "must be a day, YYYY-MM-DD") }
                _ = try await Memberships(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now())
                    .join(plan, patient: patient, startOn: start, today: today, by: staff.userID)
            }
        } catch let invalid as InvalidInput {
            return try await renderNew(req, patient, errors: ErrorLine.list(invalid), status: .unprocessableEntity)
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderNew(req, patient, errors: [ErrorLine(field: "plan", message: abort.reason)], status: .conflict)
        }
        return req.redirect(to: "/patients/\(patient.id!)/invoices/new#memberships", redirectType: .normal)
    }

    func cancelMembership(req: Request) async throws -> Response {
        let staff = try req.staff()
        let id = try req.uuidParameter("membershipID", notFound: "No such membership.")
        guard let membership = try await Membership.query(on: req.db).filter(\.$id == id).filter(\.$clinic.$id == staff.clinicID).first() else {
            throw Abort(.notFound, reason: "No such membership.")
        }
        let patient = try await Patient.require(membership.$patient.id, on: req.db)
        do {
            _ = try await req.audited(.update, objectType: "Membership", objectID: id.uuidString, patientID: patient.id) {
                try await Memberships(db: req.db, clinicID: staff.clinicID, now: req.dermis.clock.now()).cancel(id, by: staff.userID)
            }
        } catch let abort as any AbortError where abort.status == .conflict {
            return try await renderNew(req, patient, errors: [ErrorLine(field: "membership", message: abort.reason)], status: .conflict)
        }
        return req.redirect(to: "/patients/\(patient.id!)/invoices/new#memberships", redirectType: .normal)
    }

    // MARK: Reports

    struct ReportPage: Encodable {
        let page: PageHeader
        let from: String
        let to: String
        let report: MoneyReport?
        let invoiced: String
        let liability: String
        let expiringDays: Int
        let errors: [ErrorLine]
        let packageCount: Int
    }

    /// The range asked for (`from`, `to`: days, both included), by default this month so far.
    private func range(_ req: Request) async throws -> (CalendarDate, CalendarDate, Date, Date, TimeZone) {
        let zone = try await req.clinic()?.zone ?? TimeZone.gmt
        let today = req.today(in: try await req.clinic())
        let fromText = (try? req.query.get(String.self, at: "from")) ?? ""
        let toText = (try? req.query.get(String.self, at: "to")) ?? ""
        var issues: [FieldIssue] = []
        let from = fromText.isEmpty ? CalendarDate(year: today.year, month: today.month, day: 1)! : CalendarDate(iso: fromText)
        let to = toText.isEmpty ? today : CalendarDate(iso: toText)
        if from == nil { issues.append(FieldIssue(path: "from", problem: "must be a day, YYYY-MM-DD")) }
        if to == nil { issues.append(FieldIssue(path: "to", problem: "must be a day, YYYY-MM-DD")) }
        if let from, let to, to < from { issues.append(FieldIssue(path: "to", problem: "must be on or after the first day")) }
        if let from, let to, from.days(until: to) > 366 { issues.append(FieldIssue(path: "to", problem: "at most a year at a time")) }
        if !issues.isEmpty { throw InvalidInput(issues) }
        return (from!, to!, AftercareSchedule.bounds(of: from!, in: zone).0, AftercareSchedule.bounds(of: to!, in: zone).1, zone)
    }

    func reports(req: Request) async throws -> Response {
        let staff = try req.staff()
        return try await req.audited(.search, objectType: "Invoice") {
            do {
                let (from, to, start, end, _) = try await range(req)
                let report = try await MoneyReport.build(db: req.db, clinicID: staff.clinicID, from: start, to: end, today: req.today(in: try await req.clinic()))
                return try await req.view.render("money-reports", ReportPage(
                    page: try await PageHeader(req, title: "Money"), from: from.description, to: to.description, report: report,
                    invoiced: report.map { "\($0.currency.code) \($0.currency.format($0.invoicedTotal))" } ?? "",
                    liability: report.map { "\($0.currency.code) \($0.currency.format($0.liabilityTotal))" } ?? "",
                    expiringDays: MoneyReport.expiringDays, errors: [], packageCount: report?.liability.count ?? 0)).encodeResponse(for: req)
            } catch let invalid as InvalidInput {
                return try await req.view.render("money-reports", ReportPage(
                    page: try await PageHeader(req, title: "Money"), from: (try? req.query.get(String.self, at: "from")) ?? "",
                    to: (try? req.query.get(String.self, at: "to")) ?? "", report: nil, invoiced: "", liability: "",
                    expiringDays: MoneyReport.expiringDays, errors: ErrorLine.list(invalid), packageCount: 0)).response(.unprocessableEntity, for: req)
            }
        }
    }

    // MARK: For the accountant

    func export(req: Request) async throws -> Response {
        let staff = try req.staff()
        let file = req.parameters.get("file") ?? ""
        guard ["invoices.csv", "payments.csv", "refunds.csv", "package-liability.csv"].contains(file) else {
            throw Abort(.notFound, reason: "Exports: invoices.csv, payments.csv, refunds.csv, package-liability.csv.")
        }
        let today = req.today(in: try await req.clinic())
        let text = try await req.audited(.export, objectType: "Invoice", objectID: file) {
            let invoices = try await Invoice.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).sort(\.$number).all()
            let byID = Dictionary(uniqueKeysWithValues: invoices.map { ($0.id!, $0) })
            func amount(_ minor: Int64, _ code: String) -> String { Currency(code)?.format(minor) ?? "\(minor)" }
            func iso(_ date: Date) -> String { date.formatted(.iso8601) }
            switch file {
            case "package-liability.csv":
                let report = try await MoneyReport.build(db: req.db, clinicID: staff.clinicID, from: .distantPast, to: .distantFuture, today: today)
                return CSV.line(["package_id", "patient_id", "patient", "package", "sessions_left", "sessions", "expires_on", "currency", "value_net"])
                    + (report?.liability ?? []).map { row in
                        CSV.line([row.packageID, row.patientID, row.patient, row.name, "\(row.left)", "\(row.sessions)", row.expiresOn,
                                  report?.currency.code ?? "", report?.currency.format(row.minor) ?? ""])
                    }.joined()
            case "invoices.csv":
                return CSV.line(["number", "kind", "issued_at", "currency", "billed_to", "patient_id", "credits", "net", "tax", "gross",
                                 "prices_include_tax", "reason"])
                    + invoices.map { i in
                        CSV.line([Self.number(i), i.kind, iso(i.issuedAt), i.currency, i.billedTo ?? "", i.patientID?.uuidString ?? "",
                                  i.creditsInvoiceID.flatMap { byID[$0] }.map(Self.number) ?? "", amount(i.net, i.currency), amount(i.tax, i.currency),
                                  amount(i.gross, i.currency), i.pricesIncludeTax ? "yes" : "no", i.reason ?? ""])
                    }.joined()
            default:
                let kind = file == "payments.csv" ? "payment" : "refund"
                let rows = try await InvoicePayment.query(on: req.db).filter(\.$clinic.$id == staff.clinicID).filter(\.$kind == kind)
                    .sort(\.$recordedAt).all()
                return CSV.line([kind == "payment" ? "invoice" : "credit_note", "recorded_at", "method", "currency", "amount", "reference"])
                    + rows.map { p in
                        let invoice = byID[p.invoiceID]
                        return CSV.line([invoice.map(Self.number) ?? "", iso(p.recordedAt), p.method, invoice?.currency ?? "",
                                         invoice.map { amount(p.amount, $0.currency) } ?? "\(p.amount)", p.reference ?? ""])
                    }.joined()
            }
        }
        let response = Response(status: .ok, body: .init(string: text))
        response.headers.replaceOrAdd(name: .contentType, value: "text/csv; charset=utf-8")
        response.headers.replaceOrAdd(name: .contentDisposition, value: "attachment; filename=\"\(file)\"")
        return response
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
