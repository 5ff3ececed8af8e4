import DermisCore
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

/// R13: what one upload may cost — scans, memory, threads — and that a signature keeps only its pixels.
@Suite struct UploadLimitsTests {
    static func gradient(width: Int, height: Int) -> [UInt8] {
        var rgb: [UInt8] = []
        rgb.reserveCapacity(width * height * 3)
        for y in 0..<height { for x in 0..<width { rgb += [UInt8(x * 255 / width), UInt8(y * 255 / height), UInt8((x ^ y) & 0xFF)] } }
        return rgb
    }

    @Test func aJPEGWithMoreScansThanTheLimitIsRefusedBeforeItIsDecoded() throws {
        let progressive = try #require(PhotoSanitizer.encodeJPEG(rgb: Self.gradient(width: 64, height: 64), width: 64, height: 64, progressive: true))
        // libjpeg's simple progression writes ten scans for a colour image: five are too few, the default plenty.
        let strict = PhotoSanitizer(maxBytes: 1_048_576, maxPixels: 1_000_000, maxScans: 5)
        #expect {
            try strict.clean(progressive, field: "photo")
        } throws: { error in
            let issue = (error as? InvalidInput)?.issues.first
            return issue?.path == "photo" && issue?.problem.contains("more than 5 scans") == true
        }
        let usual = PhotoSanitizer(maxBytes: 1_048_576, maxPixels: 1_000_000)
        let clean = try usual.clean(progressive, field: "photo")
        #expect(clean.width == 64 && clean.kind == .jpeg)
        // A baseline JPEG is one scan: fine under the strict limit.
        let baseline = try #require(PhotoSanitizer.encodeJPEG(rgb: Self.gradient(width: 64, height: 64), width: 64, height: 64))
        #expect(try strict.clean(baseline, field: "photo").height == 64)
    }

    @Test func aDecodeThatWouldPassItsMemoryCapIsRefused() throws {
        let progressive = try #require(PhotoSanitizer.encodeJPEG(rgb: Self.gradient(width: 512, height: 512), width: 512, height: 512, progressive: true))
        // 512 × 512 × 3 bytes of pixels (768 KB), and more for a progressive JPEG's coefficients: 256 KB is not enough.
        let capped = PhotoSanitizer(maxBytes: 4_194_304, maxPixels: 1_000_000, maxMemory: 256 * 1024)
        #expect {
            try capped.clean(progressive, field: "photo")
        } throws: { ($0 as? InvalidInput)?.issues.first?.problem.contains("too large to process") == true }
        // Room for the pixels but little more: a progressive JPEG's coefficient buffers pass the cap, a baseline one's
        // few rows of buffers do not.
        let pixels = 512 * 512 * 3
        let tight = PhotoSanitizer(maxBytes: 4_194_304, maxPixels: 1_000_000, maxMemory: pixels + 100 * 1024)
        #expect {
            try tight.clean(progressive, field: "photo")
        } throws: { ($0 as? InvalidInput)?.issues.first?.problem.contains("too large to process") == true }
        let baseline = try #require(PhotoSanitizer.encodeJPEG(rgb: Self.gradient(width: 512, height: 512), width: 512, height: 512))
        #expect(try tight.clean(baseline, field: "photo").width == 512)
        let png = try #require(TestImage.png(width: 300, height: 300))
        #expect(throws: InvalidInput.self) { try capped.clean(png, field: "signature") }
        #expect(try PhotoSanitizer(maxBytes: 4_194_304, maxPixels: 1_000_000).clean(progressive, field: "photo").width == 512)
    }

    @Test func decodesRunOnTheirOwnFewThreadsAndABusyQueueTurnsUploadsAway() async throws {
        let decoding = ImageDecoding(threads: 1, waiting: 0)
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        async let first: Int = decoding.run {
            started.signal()
            release.wait()
            return 1
        }
        started.wait()
        // The only thread is busy and nothing may wait: turned away at once with 503 and Retry-After.
        await #expect {
            try await decoding.run { 2 }
        } throws: { error in
            guard let busy = error as? ImageDecoding.Busy else { return false }
            return busy.status == .serviceUnavailable && busy.headers.first(name: "Retry-After") != nil
        }
        release.signal()
        #expect(try await first == 1)
        #expect(try await decoding.run { 3 } == 3, "once the thread is free, the next decode runs")
        try await decoding.shutdown()
    }
}

extension AppTests {
    @Suite struct UploadLimits {
        @Test func aSignatureKeepsOnlyItsPixels() async throws {
            try await withDermis { app, settings in
                let staff = try await makeStaff(app, role: .practitioner)
                let zoe = try #require(try await Patient.query(on: app.db).filter(\.$familyName == "Lefèvre").first())
                let course = Course(app: app, session: try await signIn(app, staff, clock: settings.clock), patientID: try zoe.requireID())
                try await course.intake()
                let planID = try #require(try await course.plan()["planID"] as? String)
                // A drawing with a text chunk and bytes after its end, as a crafted client could send.
                var png = try #require(TestImage.png(width: 40, height: 20))
                let iend = try #require(png.range(of: Data("IEND".utf8)))
                png.insert(contentsOf: TestImage.pngChunk("tEXt", Array("Comment\u{0}hidden-in-signature".utf8)), at: iend.lowerBound - 4)
                png.append(Data("TRAILING-PAYLOAD".utf8))
                let (status, body, text) = try await course.call(.POST, "/plans/\(planID)/consents",
                                                                ["typedName": "zoe lefevre", "signature": "data:image/png;base64,\(png.base64EncodedString())"])
                #expect(status == .created, "\(text)")
                let stored = try #require(try await ConsentRecord.query(on: app.db).first()).signaturePNG
                #expect(!stored.contains("hidden-in-signature") && !stored.contains("TRAILING-PAYLOAD"))
                #expect(body["signatureSHA256"] as? String == Secrets.digest(stored))
                // PNG's magic bytes over garbage: refused, naming the field.
                let fake = Data(TreatmentService.pngMagic + Array(repeating: 7, count: 200)).base64EncodedString()
                let (refused, refusal, _) = try await course.call(.POST, "/plans/\(planID)/consents",
                                                                  ["typedName": "zoe lefevre", "signature": "data:image/png;base64,\(fake)"])
                #expect(refused == .unprocessableEntity && (refusal["error"] as? [String: Any])?["field"] as? String == "signature")
            }
        }

        @Test func consentTextAndClinicNamesHaveLengthLimits() async throws {
            try await withDermis { app, settings in
                let admin = try await makeStaff(app, role: .admin)
                let clinicID = admin.user.$clinic.id
                await #expect {
                    _ = try await ConsentTexts.publish(title: "Long", body: String(repeating: "I understand the risks. ", count: 1000),
                                                       clinicID: clinicID, by: admin.id, at: settings.clock.now(), on: app.db)
                } throws: { ($0 as? InvalidInput)?.issues.first?.path == "body" }
                #expect(try await ConsentTemplate.query(on: app.db).count() == 1, "only the demo's text")
            }
            try await withDermis(seedDemo: false) { app, _ in
                await #expect {
                    _ = try await StaffAccounts.clinic(named: String(repeating: "Skin ", count: 40), timeZone: "UTC", on: app.db)
                } throws: { ($0 as? InvalidInput)?.issues.first?.path == "clinicName" }
                await #expect {
                    _ = try await StaffAccounts.clinic(named: "Harbour\nSkin", timeZone: "UTC", on: app.db)
                } throws: { ($0 as? InvalidInput)?.issues.first?.path == "clinicName" }
                let clinics = try await Clinic.query(on: app.db).count()
                #expect(clinics == 0)
            }
        }
    }
}
