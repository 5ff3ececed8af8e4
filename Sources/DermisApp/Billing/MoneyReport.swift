import DermisCore
import Fluent
import Foundation
import Vapor

/// The money side's reports for a date range: what was invoiced, net of tax and of credit notes, by service and by the
/// practitioner named on the line; the package sessions delivered, valued at their share of the package's net price,
/// by the practitioner who gave them; what the clinic still owes in unused package sessions (its liability); and the
/// packages with sessions left that expire within 30 days.
struct MoneyReport: Encodable {
    struct Row: Encodable {
        let name: String
        let amount: String
        let minor: Int64
    }

    struct LiabilityRow: Encodable {
        let packageID: String
        let patient: String
        let patientID: String
        let name: String
        let left: Int
        let sessions: Int
        let expiresOn: String
        let value: String
        let minor: Int64
    }

    let currency: Currency
    let byService: [Row]
    let byPractitioner: [Row]
    let delivered: [Row]
    let invoicedTotal: Int64
    let liability: [LiabilityRow]
    let liabilityTotal: Int64
    let expiring: [LiabilityRow]

    static let expiringDays = 30

    static func build(db: any Database, clinicID: UUID, from: Date, to: Date, today: CalendarDate) async throws -> MoneyReport? {
        guard let billing = try await ClinicBilling.find(clinicID, on: db), let currency = Currency(billing.currency) else { return nil }
        let services = Dictionary(uniqueKeysWithValues: try await Service.query(on: db).filter(\.$clinic.$id == clinicID).all().map { ($0.code, $0.name) })
        let staff = Dictionary(uniqueKeysWithValues: try await StaffUser.query(on: db).filter(\.$clinic.$id == clinicID).all().map { ($0.id!.uuidString, $0.name) })
        var byService: [String: Int64] = [:]
        var byPractitioner: [String: Int64] = [:]
        var total: Int64 = 0
        let issued = try await Invoice.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$issuedAt >= from).filter(\.$issuedAt < to).all()
        for invoice in issued {
            let sign: Int64 = invoice.kind == Invoice.creditNoteKind ? -1 : 1
            for (line, totals) in zip(try invoice.decodedLines, try invoice.decodedLineTotals) {
                let service = line.service.map { services[$0] ?? $0 } ?? (line.description.hasPrefix("Membership") ? "Memberships"
                    : line.description.hasPrefix("Deposit") ? "Deposits (online bookings)" : "Other")
                byService[service, default: 0] += sign * totals.net
                byPractitioner[line.practitioner.flatMap { staff[$0] } ?? "Not named on the invoice", default: 0] += sign * totals.net
                total += sign * totals.net
            }
        }
        // Package sessions delivered in the range: each worth the package's net price over its sessions.
        var delivered: [String: Int64] = [:]
        let redemptions = try await PackageRedemption.query(on: db).filter(\.$redeemedAt >= from).filter(\.$redeemedAt < to).all()
        let redeemed = try await PatientPackage.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$id ~~ Set(redemptions.map { $0.$package.id })).all()
        let packageInvoices = try await net(of: redeemed, db)
        for redemption in redemptions {
            guard let package = redeemed.first(where: { $0.id == redemption.$package.id }) else { continue }
            let share = MoneyMath.divide(packageInvoices[package.invoiceID] ?? 0, by: Int64(max(1, package.sessions)))
            delivered[staff[redemption.practitionerID.uuidString] ?? "—", default: 0] += share
        }
        // Liability: active, unexpired packages with sessions left, at their net value.
        let active = try await PatientPackage.query(on: db).filter(\.$clinic.$id == clinicID).filter(\.$status == "active")
            .filter(\.$expiresOn >= today.description).sort(\.$expiresOn).all()
        let standings = try await Packages(db: db, clinicID: clinicID, now: Date()).standings(active).filter { $0.left > 0 }
        let nets = try await net(of: active, db)
        let patients = Dictionary(uniqueKeysWithValues: try await Patient.query(on: db).filter(\.$id ~~ Set(active.map { $0.$patient.id })).all().map { ($0.id!, $0) })
        let liability = standings.map { s in
            let value = MoneyMath.divide((nets[s.package.invoiceID] ?? 0) * Int64(s.left), by: Int64(max(1, s.package.sessions)))
            return LiabilityRow(packageID: s.package.id!.uuidString, patient: patients[s.package.$patient.id].map { "\($0.fullName) (\($0.mrn))" } ?? "—",
                                patientID: s.package.$patient.id.uuidString, name: s.package.name, left: s.left, sessions: s.package.sessions,
                                expiresOn: s.package.expiresOn, value: "\(currency.code) \(currency.format(value))", minor: value)
        }
        let horizon = today.adding(days: expiringDays).description
        func rows(_ sums: [String: Int64]) -> [Row] {
            sums.sorted { $0.value == $1.value ? $0.key < $1.key : $0.value > $1.value }
                .map { Row(name: $0.key, amount: "\(currency.code) \(currency.format($0.value))", minor: $0.value) }
        }
        return MoneyReport(currency: currency, byService: rows(byService), byPractitioner: rows(byPractitioner), delivered: rows(delivered),
                           invoicedTotal: total, liability: liability, liabilityTotal: liability.map(\.minor).reduce(0, +),
                           expiring: liability.filter { $0.expiresOn <= horizon })
    }

    /// The net amount of each package's invoice.
    private static func net(of packages: [PatientPackage], _ db: any Database) async throws -> [UUID: Int64] {
        guard !packages.isEmpty else { return [:] }
        return Dictionary(uniqueKeysWithValues: try await Invoice.query(on: db).filter(\.$id ~~ Set(packages.map(\.invoiceID))).all().map { ($0.id!, $0.net) })
    }
}
