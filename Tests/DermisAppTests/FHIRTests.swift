import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// A FHIR client over the test app: a staff bearer token, the host it says it reached.
struct FHIRTestClient {
    let app: Application
    let token: String?
    var host = "clinic.example:8443"

    struct Reply {
        let status: HTTPStatus
        let headers: HTTPHeaders
        let text: String
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:] }
        var entries: [[String: Any]] { (object["entry"] as? [[String: Any]] ?? []).compactMap { $0["resource"] as? [String: Any] } }
        var issue: [String: Any] { (object["issue"] as? [[String: Any]])?.first ?? [:] }
        var diagnostics: String { issue["diagnostics"] as? String ?? "" }
        func link(_ relation: String) -> String? {
            (object["link"] as? [[String: Any]])?.first { $0["relation"] as? String == relation }?["url"] as? String
        }
    }

    static func make(_ app: Application, role: StaffRole, clinicID: UUID? = nil) async throws -> FHIRTestClient {
        let staff = try await makeStaff(app, role: role, clinicID: clinicID)
        return FHIRTestClient(app: app, token: try await DermisApp.Sessions.issueToken(for: staff.id, name: "fhir", days: 1, on: app.db, at: testNow))
    }

    func send(_ method: HTTPMethod, _ path: String, _ body: String? = nil, headers extra: HTTPHeaders = [:]) async throws -> Reply {
        var headers: HTTPHeaders = ["Host": host, "Accept": "application/fhir+json"]
        if let token { headers.add(name: .authorization, value: "Bearer \(token)") }
        if body != nil { headers.add(name: .contentType, value: "application/fhir+json") }
        for (name, value) in extra { headers.replaceOrAdd(name: name, value: value) }
        var reply = Reply(status: .ok, headers: [:], text: "")
        let url = path.hasPrefix("http") ? String(path.drop { $0 != "/" }.dropFirst(2).drop { $0 != "/" }) : "/fhir/R4" + path
        try await app.testing().test(method, url, headers: headers, body: body.map { ByteBuffer(string: $0) }) { res in
            reply = Reply(status: res.status, headers: res.headers, text: res.body.string)
        }
        return reply
    }

    func json(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }
}

extension AppTests {
    @Suite struct FHIR {
        static func patientJSON(family: String = "Okafor", given: String = "Ada", birth: String = "1990-02-03", id: String? = nil,
                                identifier: (String, String)? = nil, versionID: String? = nil) -> [String: Any] {
            var body: [String: Any] = ["resourceType": "Patient", "name": [["family": family, "given": [given]]], "birthDate": birth,
                                       "telecom": [["system": "email", "value": "\(given.lowercased())@example.com"]]]
            if let id { body["id"] = id }
            if let identifier { body["identifier"] = [["system": identifier.0, "value": identifier.1]] }
            if let versionID { body["meta"] = ["versionId": versionID] }
            return body
        }

        @Test func theCapabilityStatementListsOnlyWhatIsServedAndIsPublic() async throws {
            try await withDermis { app, _ in
                let reply = try await FHIRTestClient(app: app, token: nil).send(.GET, "/metadata")
                #expect(reply.status == .ok && reply.headers.first(name: .contentType)?.hasPrefix("application/fhir+json") == true)
                #expect(reply.object["fhirVersion"] as? String == "4.0.1" && reply.object["kind"] as? String == "instance")
                let resources = ((reply.object["rest"] as? [[String: Any]])?.first?["resource"] as? [[String: Any]]) ?? []
                #expect(resources.map { $0["type"] as? String ?? "" } == FHIRStore.types)
                // Every declared search parameter is one the server parses; every interaction is one it routes.
                for resource in resources {
                    let type = resource["type"] as! String
                    let params = (resource["searchParam"] as? [[String: Any]] ?? []).map { $0["name"] as! String }
                    #expect(Set(params) == Set(FHIRSearch.definitions(type).keys), "\(type)")
                    let interactions = Set((resource["interaction"] as? [[String: Any]] ?? []).map { $0["code"] as! String })
                    #expect(interactions.contains("create") == FHIRWrites.writable.contains(type), "\(type)")
                    #expect(interactions.contains("vread") == FHIRStore.versionedTypes.contains(type), "\(type)")
                }
            }
        }

        @Test func readsCarryVersionsAndAnETagTheClientCanRefreshWith() async throws {
            try await withDermis { app, _ in
                let fhir = try await FHIRTestClient.make(app, role: .frontDesk)
                let created = try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON()))
                #expect(created.status == .created, "\(created.text)")
                let id = try #require(created.object["id"] as? String)
                #expect(created.headers.first(name: .location) == "http://clinic.example:8443/fhir/R4/Patient/\(id)/_history/1")
                #expect(created.headers.first(name: .eTag) == "W/\"1\"" && created.headers.first(name: .lastModified) != nil)
                let read = try await fhir.send(.GET, "/Patient/\(id)")
                #expect(read.status == .ok && (read.object["meta"] as? [String: Any])?["versionId"] as? String == "1")
                for tag in ["W/\"1\"", "1", "\"1\""] {
                    #expect(try await fhir.send(.GET, "/Patient/\(id)", headers: ["If-None-Match": tag]).status == .notModified, "\(tag)")
                }
                // An update from version 1; a second from version 1 is stale: 412, nothing written.
                let edit = fhir.json(Self.patientJSON(family: "Okafor-Bell", id: id))
                let updated = try await fhir.send(.PUT, "/Patient/\(id)", edit, headers: ["If-Match": "W/\"1\""])
                #expect(updated.status == .ok && updated.headers.first(name: .eTag) == "W/\"2\"", "\(updated.text)")
                let stale = try await fhir.send(.PUT, "/Patient/\(id)", fhir.json(Self.patientJSON(family: "Stale", id: id)), headers: ["If-Match": "W/\"1\""])
                #expect(stale.status == .preconditionFailed && stale.object["resourceType"] as? String == "OperationOutcome")
                // meta.versionId stands in for If-Match (fhirpy's save sends the resource as read); neither is a 428.
                let fromMeta = try await fhir.send(.PUT, "/Patient/\(id)", fhir.json(Self.patientJSON(family: "Bell", id: id, versionID: "2")))
                #expect(fromMeta.status == .ok, "\(fromMeta.text)")
                #expect(try await fhir.send(.PUT, "/Patient/\(id)", fhir.json(Self.patientJSON(id: id))).status == .preconditionRequired)
                #expect(try await fhir.send(.GET, "/Patient/\(id)", headers: ["If-None-Match": "W/\"1\""]).status == .ok)
                // Every version is kept, whichever path wrote it: vread and history.
                let history = try await fhir.send(.GET, "/Patient/\(id)/_history")
                #expect(history.object["type"] as? String == "history")
                #expect(history.entries.map { ($0["name"] as? [[String: Any]])?.first?["family"] as? String ?? "" } == ["Bell", "Okafor-Bell", "Okafor"])
                let first = try await fhir.send(.GET, "/Patient/\(id)/_history/1")
                #expect(first.status == .ok && (first.object["name"] as? [[String: Any]])?.first?["family"] as? String == "Okafor")
                #expect(try await fhir.send(.GET, "/Patient/\(id)/_history/9").status == .notFound)
                // What FHIR does not carry is kept: the Fitzpatrick type the intake recorded survives a FHIR update.
                let stored = try await Patient.find(UUID(uuidString: id), on: app.db)!
                stored.fitzpatrickType = 4
                try await stored.save(on: app.db)
                let kept = try await fhir.send(.PUT, "/Patient/\(id)", fhir.json(Self.patientJSON(family: "Bell", id: id)), headers: ["If-Match": "3"])
                let afterUpdate = try await Patient.find(UUID(uuidString: id), on: app.db)
                #expect(kept.status == .ok && afterUpdate?.fitzpatrickType == 4, "\(kept.text)")
                // The form's archive is a version too.
                let staff = try await StaffUser.query(on: app.db).first()!
                _ = try await PatientRegistry(db: app.db, clinicID: staff.$clinic.id).setArchived(UUID(uuidString: id)!, true, by: staff.id!, at: testNow)
                let archived = try await fhir.send(.GET, "/Patient/\(id)/_history/5")
                #expect(archived.status == .ok && archived.object["active"] as? Bool == false)
            }
        }

        @Test func badWritesAreOperationOutcomesNamingTheFieldAndStoreNothing() async throws {
            try await withDermis { app, _ in
                let fhir = try await FHIRTestClient.make(app, role: .frontDesk)
                let before = try await Patient.query(on: app.db).count()
                let invalid = try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON(family: "", birth: "2990-01-01")))
                #expect(invalid.status == .unprocessableEntity)
                let expressions = (invalid.object["issue"] as? [[String: Any]] ?? []).flatMap { $0["expression"] as? [String] ?? [] }
                #expect(expressions.contains("Patient.name[0].family") && expressions.contains("Patient.birthDate"))
                let malformed = try await fhir.send(.POST, "/Patient", "{\"resourceType\": \"Patient\",")
                #expect(malformed.status == .badRequest && malformed.diagnostics.contains("not valid JSON"))
                let wrongType = try await fhir.send(.POST, "/Patient", "{\"resourceType\": \"Observation\"}")
                #expect(wrongType.status == .badRequest && wrongType.issue["expression"] as? [String] == ["resourceType"])
                let xml = try await fhir.send(.POST, "/Patient", "<Patient/>", headers: ["Content-Type": "application/fhir+xml"])
                #expect(xml.status == .unsupportedMediaType && xml.object["resourceType"] as? String == "OperationOutcome")
                let telecom = try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON().merging(["telecom": ["system": "phone"]]) { $1 }))
                #expect(telecom.status == .unprocessableEntity && telecom.text.contains("Patient.telecom"))
                let array = try await fhir.send(.POST, "/Patient", "[1,2]")
                #expect(array.status == .badRequest)
                let readOnly = try await fhir.send(.POST, "/Observation", "{\"resourceType\": \"Observation\"}")
                #expect(readOnly.status == .forbidden || readOnly.status == .methodNotAllowed)
                let unknownType = try await fhir.send(.GET, "/Spaceship")
                #expect(unknownType.status == .notFound && unknownType.object["resourceType"] as? String == "OperationOutcome")
                let badReference = try await fhir.send(.POST, "/Appointment", fhir.json([
                    "resourceType": "Appointment", "status": "booked", "start": "2026-12-02T10:00:00Z",
                    "serviceType": [["coding": [["system": FHIRNames.service, "code": "consultation"]]]],
                    "participant": [["actor": ["reference": "Patient/not-an-id"], "status": "accepted"]]]))
                #expect(badReference.status == .unprocessableEntity && badReference.issue["expression"] as? [String] == ["Appointment.participant[0].actor.reference"])
                #expect(try await Patient.query(on: app.db).count() == before)
                // A PUT whose body names another id is refused.
                let id = try await Patient.query(on: app.db).first()!.id!.fhirID
                let mismatch = try await fhir.send(.PUT, "/Patient/\(id)", fhir.json(Self.patientJSON(id: UUID().fhirID)), headers: ["If-Match": "1"])
                #expect(mismatch.status == .badRequest)
            }
        }

        @Test func conditionalCreateFindsTheOneMatchAndRefusesAmbiguity() async throws {
            try await withDermis { app, _ in
                let fhir = try await FHIRTestClient.make(app, role: .frontDesk)
                let body = fhir.json(Self.patientJSON(identifier: ("urn:oid:2.16.840.1.113883.19.5", "OLD-77")))
                let first = try await fhir.send(.POST, "/Patient?identifier=urn:oid:2.16.840.1.113883.19.5%7COLD-77", body)
                #expect(first.status == .created, "\(first.text)")
                // The same again, as fhirpy sends it (query string) and as the spec's header: found, not made twice.
                let again = try await fhir.send(.POST, "/Patient?identifier=urn:oid:2.16.840.1.113883.19.5%7COLD-77", body)
                #expect(again.status == .ok && again.object["id"] as? String == first.object["id"] as? String)
                let header = try await fhir.send(.POST, "/Patient", body, headers: ["If-None-Exist": "identifier=urn:oid:2.16.840.1.113883.19.5|OLD-77"])
                #expect(header.status == .ok)
                #expect(try await PatientIdentifier.query(on: app.db).count() == 1)
                // The identifier is another patient's: a plain create of it is a conflict.
                let clash = try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON(family: "Other", identifier: ("urn:oid:2.16.840.1.113883.19.5", "OLD-77"))))
                #expect(clash.status == .conflict)
                // Two patients born that day: ambiguous, 412.
                _ = try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON(family: "Twin", birth: "1990-02-03")))
                let ambiguous = try await fhir.send(.POST, "/Patient", body, headers: ["If-None-Exist": "birthdate=1990-02-03"])
                #expect(ambiguous.status == .preconditionFailed)
                // A condition that is no search is refused, not ignored (that would create a duplicate).
                #expect(try await fhir.send(.POST, "/Patient", body, headers: ["If-None-Exist": ""]).status == .badRequest)
            }
        }

        @Test func searchPagesWithAbsoluteLinksCountsAndHonoursDatesAtTheirBoundaries() async throws {
            try await withDermis { app, _ in
                let fhir = try await FHIRTestClient.make(app, role: .frontDesk)
                for (i, birth) in ["1990-02-02", "1990-02-03", "1990-02-04", "1991-01-01", "1989-12-31"].enumerated() {
                    #expect(try await fhir.send(.POST, "/Patient", fhir.json(Self.patientJSON(family: "Searchable", given: "P\(i)", birth: birth))).status == .created)
                }
                func ids(_ query: String) async throws -> Int {
                    let reply = try await fhir.send(.GET, "/Patient?family=searchable&\(query)")
                    #expect(reply.status == .ok, "\(query): \(reply.text)")
                    return reply.object["total"] as? Int ?? -1
                }
                #expect(try await ids("birthdate=1990-02-03") == 1)
                #expect(try await ids("birthdate=ge1990-02-03") == 3)
                #expect(try await ids("birthdate=gt1990-02-03") == 2)
                #expect(try await ids("birthdate=lt1990-02-03") == 2)
                #expect(try await ids("birthdate=le1990-02-03") == 3)
                #expect(try await ids("birthdate=1990") == 3)
                #expect(try await ids("birthdate=1990-02") == 3)
                #expect(try await ids("birthdate=ne1990-02-03") == 4)
                #expect(try await ids("birthdate=ge1990-01-01&birthdate=lt1991-01-01") == 3)
                #expect(try await ids("given=p1,p2") == 2)
                #expect(try await ids("name=SEARCH") == 5)
                // Paging: absolute links on the host the client used; following them visits each record once.
                var seen: [String] = []
                var next: String? = "/Patient?family=searchable&_count=2"
                while let url = next {
                    let page = try await fhir.send(.GET, url)
                    #expect(page.object["total"] as? Int == 5)
                    seen += page.entries.map { $0["id"] as! String }
                    next = page.link("next")
                    if let next { #expect(next.hasPrefix("http://clinic.example:8443/fhir/R4/Patient?")) }
                }
                #expect(seen.count == 5 && Set(seen).count == 5)
                let count = try await fhir.send(.GET, "/Patient?family=searchable&_summary=count")
                #expect(count.object["total"] as? Int == 5 && count.entries.isEmpty)
                let zero = try await fhir.send(.GET, "/Patient?family=searchable&_count=0")
                #expect(zero.object["total"] as? Int == 5 && zero.entries.isEmpty)
                // Unknown parameters are refused by name, unless the client asks for leniency; bad values name the parameter.
                let unknown = try await fhir.send(.GET, "/Patient?colour=blue")
                #expect(unknown.status == .badRequest && unknown.issue["expression"] as? [String] == ["colour"])
                #expect(try await fhir.send(.GET, "/Patient?colour=blue", headers: ["Prefer": "handling=lenient"]).status == .ok)
                #expect(try await fhir.send(.GET, "/Patient?birthdate=yesterday").status == .badRequest)
                #expect(try await fhir.send(.GET, "/Patient?_count=-1").status == .badRequest)
                #expect(try await fhir.send(.GET, "/Patient?_offset=9223372036854775807").status == .badRequest)
                #expect(try await fhir.send(.POST, "/Patient/_search", "_offset=9223372036854775807",
                                            headers: ["Content-Type": "application/x-www-form-urlencoded"]).status == .badRequest)
                #expect(try await fhir.send(.GET, "/Patient?name:sounds-like=x").status == .badRequest)
                #expect(try await fhir.send(.GET, "/Patient?_include=Patient:nothing").status == .badRequest)
            }
        }

        @Test func appointmentsAreBookedThroughTheSameGuardAndMovedOrCancelledByUpdate() async throws {
            try await withDermis { app, _ in
                let fhir = try await FHIRTestClient.make(app, role: .frontDesk)
                let patient = try await Patient.query(on: app.db).first()!
                let location = try await Location.query(on: app.db).first()!
                let practitioner = try #require(try await ServiceQualification.query(on: app.db).first()).$staff.id
                func booking(at start: String) -> String {
                    fhir.json(["resourceType": "Appointment", "status": "booked", "start": start,
                               "serviceType": [["coding": [["system": FHIRNames.service, "code": "consultation"]]]],
                               "participant": [["actor": ["reference": "Patient/\(patient.id!.fhirID)"], "status": "accepted"],
                                               ["actor": ["reference": "Practitioner/\(practitioner.fhirID)"], "status": "accepted"],
                                               ["actor": ["reference": "Location/\(location.id!.fhirID)"], "status": "accepted"]]])
                }
                let booked = try await fhir.send(.POST, "/Appointment", booking(at: "2026-12-02T10:00:00Z"))
                #expect(booked.status == .created, "\(booked.text)")
                let id = try #require(booked.object["id"] as? String)
                let before = try await Appointment.query(on: app.db).count()
                // The same practitioner at the same time: the no-double-booking guard answers, as an OperationOutcome.
                let clash = try await fhir.send(.POST, "/Appointment", booking(at: "2026-12-02T10:00:00Z"))
                #expect(clash.status == .conflict && clash.issue["code"] as? String == "conflict", "\(clash.text)")
                #expect(try await Appointment.query(on: app.db).count() == before)
                // Search by patient and date, with the patient included.
                let found = try await fhir.send(.GET, "/Appointment?patient=Patient/\(patient.id!.fhirID)&date=ge2026-12-02&date=lt2026-12-03&_include=Appointment:patient")
                #expect(found.object["total"] as? Int == 1)
                let modes = (found.object["entry"] as? [[String: Any]] ?? []).map { ($0["search"] as? [String: Any])?["mode"] as? String ?? "" }
                #expect(modes == ["match", "include"] && found.entries.last?["resourceType"] as? String == "Patient")
                #expect(try await fhir.send(.GET, "/Appointment?date=2026-12-03").object["total"] as? Int == 0)
                // Moved by an update, then cancelled; a stale version is 412.
                var moved = booked.object
                moved["start"] = "2026-12-02T11:00:00Z"
                let move = try await fhir.send(.PUT, "/Appointment/\(id)", fhir.json(moved), headers: ["If-Match": "W/\"1\""])
                #expect(move.status == .ok && (move.object["start"] as? String)?.hasPrefix("2026-12-02T11:00:00") == true, "\(move.text)")
                var cancel = move.object
                cancel["status"] = "cancelled"
                #expect(try await fhir.send(.PUT, "/Appointment/\(id)", fhir.json(cancel), headers: ["If-Match": "W/\"1\""]).status == .preconditionFailed)
                let cancelled = try await fhir.send(.PUT, "/Appointment/\(id)", fhir.json(cancel), headers: ["If-Match": "W/\"2\""])
                #expect(cancelled.status == .ok && cancelled.object["status"] as? String == "cancelled", "\(cancelled.text)")
                let history = try await fhir.send(.GET, "/Appointment/\(id)/_history")
                #expect(history.entries.map { $0["status"] as? String ?? "" } == ["cancelled", "booked", "booked"])
            }
        }

        @Test func aSignedSessionIsAProcedureWithAZoneChildEachAndTheWholeRecordExports() async throws {
            try await withDermis { app, settings in
                let signed = try await AppTests.FollowUp().signedSession(app, settings)
                let fhir = try await FHIRTestClient.make(app, role: .practitioner)
                let patient = signed.course.patientID.fhirID
                let procedures = try await fhir.send(.GET, "/Procedure?patient=\(patient)")
                #expect(procedures.object["total"] as? Int == 3)
                let session = try #require(procedures.entries.first { $0["id"] as? String == signed.chartID.lowercased() })
                let sites = (session["bodySite"] as? [[String: Any]] ?? []).compactMap { ($0["coding"] as? [[String: Any]])?.first?["code"] as? String }
                #expect(sites == ["36141000", "68698007"])  // cheek, forehead (SNOMED CT, from the protocol)
                #expect((session["usedReference"] as? [[String: Any]])?.count == 2)
                let cheeks = try #require(procedures.entries.first { $0["id"] as? String == "\(signed.chartID.lowercased())-cheeks" })
                let depth = (cheeks["extension"] as? [[String: Any]])?.first { $0["url"] as? String == FHIRNames.needleDepth }
                #expect((depth?["valueQuantity"] as? [String: Any])?["value"] as? Double == 1.5)
                #expect(try await fhir.send(.GET, "/Procedure/\(signed.chartID.lowercased())-cheeks").status == .ok)
                #expect(try await fhir.send(.GET, "/Provenance?target=Procedure/\(signed.chartID.lowercased())").object["total"] as? Int == 1)
                for type in ["QuestionnaireResponse", "RiskAssessment", "CarePlan", "Consent"] {
                    #expect(try await fhir.send(.GET, "/\(type)?subject=Patient/\(patient)").object["total"] as? Int == 1, "\(type)")
                }
                let everything = try await fhir.send(.GET, "/Patient/\(patient)/$everything")
                let types = Set(everything.entries.compactMap { $0["resourceType"] as? String })
                #expect(types.isSuperset(of: ["Patient", "Procedure", "Provenance", "QuestionnaireResponse", "RiskAssessment", "CarePlan", "Consent",
                                              "Practitioner", "Device", "Organization"]), "\(types)")
                // Front desk sees demographics and bookings, never clinical content (R2).
                let desk = try await FHIRTestClient.make(app, role: .frontDesk)
                for path in ["/Procedure", "/Procedure/\(signed.chartID.lowercased())", "/Patient/\(patient)/$everything", "/Observation?patient=\(patient)"] {
                    let refused = try await desk.send(.GET, path)
                    #expect(refused.status == .forbidden && refused.object["resourceType"] as? String == "OperationOutcome", "\(path)")
                }
                #expect(try await desk.send(.GET, "/Patient/\(patient)").status == .ok)
                #expect(try await desk.send(.GET, "/Appointment?date=ge2026-11-01&date=lt2026-12-31&_include=Appointment:patient").status == .ok)
                // A search that would read a whole clinical table is refused; one patient's, or by _id, is answered.
                let wide = try await fhir.send(.GET, "/Observation")
                #expect(wide.status == .badRequest && wide.issue["code"] as? String == "too-costly")
                #expect(try await fhir.send(.GET, "/Procedure?_id=\(signed.chartID.lowercased())").object["total"] as? Int == 1)
                #expect(try await fhir.send(.GET, "/Appointment").status == .badRequest)
                #expect(try await fhir.send(.GET, "/Appointment?date=ge2026-01-01&date=lt2027-01-01").status == .badRequest)  // > 92 days
            }
        }

        @Test func everyAccessIsAuditedAndAnotherClinicsRecordsAreNotFound() async throws {
            try await withDermis { app, _ in
                let other = Clinic(name: "Other Clinic", timeZone: "UTC", isDemo: false)
                try await other.create(on: app.db)
                let theirs = try await FHIRTestClient.make(app, role: .admin, clinicID: other.id!)
                let created = try await theirs.send(.POST, "/Patient", theirs.json(Self.patientJSON(family: "Foreign")))
                let foreign = try #require(created.object["id"] as? String)
                let fhir = try await FHIRTestClient.make(app, role: .practitioner)
                for path in ["/Patient/\(foreign)", "/Patient/\(foreign)/_history", "/Patient/\(foreign)/_history/1", "/Patient/\(foreign)/$everything"] {
                    #expect(try await fhir.send(.GET, path).status == .notFound, "\(path)")
                }
                #expect(try await fhir.send(.GET, "/Patient?family=foreign").object["total"] as? Int == 0)
                #expect(try await fhir.send(.GET, "/Appointment?patient=\(foreign)").object["total"] as? Int == 0)
                #expect(try await fhir.send(.PUT, "/Patient/\(foreign)", fhir.json(Self.patientJSON(id: foreign)), headers: ["If-Match": "1"]).status == .notFound)
                // Reads name their patient in the audit log; a refusal and a not-found are audited too (R9).
                let mine = try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first()!
                _ = try await fhir.send(.GET, "/Patient/\(mine.id!.fhirID)")
                let read = try await AuditEvent.query(on: app.db).filter(\.$objectType == "Patient").filter(\.$action == "read")
                    .filter(\.$patientID == mine.id!).count()
                #expect(read == 1)
                let notFound = try await AuditEvent.query(on: app.db).filter(\.$outcome == AuditOutcome.notFound.rawValue).count()
                #expect(notFound >= 4)
                let search = try await fhir.send(.GET, "/Patient?_count=3")
                let searched = try await AuditEvent.query(on: app.db).filter(\.$action == "search").filter(\.$objectType == "Patient").all()
                #expect(Set(searched.compactMap(\.patientID).map(\.fhirID)) == Set(search.entries.map { $0["id"] as! String }))
                let anonymous = try await FHIRTestClient(app: app, token: nil).send(.GET, "/Patient")
                #expect(anonymous.status == .unauthorized && anonymous.headers.first(name: .wwwAuthenticate) != nil)
                #expect(anonymous.object["resourceType"] as? String == "OperationOutcome")
                let forged = try await FHIRTestClient(app: app, token: "not-a-token").send(.GET, "/Patient")
                #expect(forged.status == .unauthorized)
            }
        }

        @Test func aBulkExportStreamsEachTypeAsNDJSONToWhoeverAskedOnly() async throws {
            try await withDermis { app, settings in
                let signed = try await AppTests.FollowUp().signedSession(app, settings)
                let fhir = try await FHIRTestClient.make(app, role: .practitioner)
                #expect(try await fhir.send(.GET, "/$export").status == .badRequest)  // Prefer: respond-async is required
                #expect(try await fhir.send(.GET, "/$export?_type=Spaceship", headers: ["Prefer": "respond-async"]).status == .badRequest)
                let kickOff = try await fhir.send(.GET, "/$export?_type=Patient,Procedure", headers: ["Prefer": "respond-async"])
                #expect(kickOff.status == .accepted)
                let status = try #require(kickOff.headers.first(name: "Content-Location"))
                #expect(status.hasPrefix("http://clinic.example:8443/fhir/bulk/"))
                let manifest = try await fhir.send(.GET, status)
                #expect(manifest.status == .ok)
                let outputs = manifest.object["output"] as? [[String: Any]] ?? []
                #expect(outputs.map { $0["type"] as? String ?? "" } == ["Patient", "Procedure"])
                let patients = try await fhir.send(.GET, outputs[0]["url"] as! String)
                #expect(patients.headers.first(name: .contentType) == "application/fhir+ndjson")
                let lines = patients.text.split(separator: "\n")
                #expect(lines.count == (try await Patient.query(on: app.db).count()))
                #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["resourceType"] as? String == "Patient" })
                let procedures = try await fhir.send(.GET, outputs[1]["url"] as! String)
                #expect(procedures.text.split(separator: "\n").count == 3 && procedures.text.contains(signed.chartID.lowercased()))
                // Every exported patient is audited.
                #expect(try await AuditEvent.query(on: app.db).filter(\.$action == "export").filter(\.$objectType == "Patient").count() == lines.count)
                // Another practitioner cannot poll or download it; front desk cannot start one.
                let colleague = try await FHIRTestClient.make(app, role: .practitioner)
                #expect(try await colleague.send(.GET, status).status == .notFound)
                #expect(try await colleague.send(.GET, outputs[0]["url"] as! String).status == .notFound)
                let desk = try await FHIRTestClient.make(app, role: .frontDesk)
                #expect(try await desk.send(.GET, "/Patient/$export", headers: ["Prefer": "respond-async"]).status == .forbidden)
                // A Group (a location) exports the patients booked there; deleting the job ends it.
                let group = try await fhir.send(.GET, "/Group").entries.first?["id"] as? String
                #expect(try await fhir.send(.GET, "/Group/\(group ?? "")/$export", headers: ["Prefer": "respond-async"]).status == .accepted)
                #expect(try await fhir.send(.GET, "/Group/\(UUID().fhirID)/$export", headers: ["Prefer": "respond-async"]).status == .notFound)
                #expect(try await fhir.send(.DELETE, status).status == .accepted)
                #expect(try await fhir.send(.GET, status).status == .notFound)
            }
        }
    }
}
