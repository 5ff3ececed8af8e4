import DermisCore
import Foundation
import Testing
import VaporTesting
@testable import DermisApp

extension AppTests {
    @Suite struct PlanPage {
        @Test func theFormOffersEveryZoneOnTheMapAndInTheList() async throws {
            try await withDermis { app, settings in
                let session = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                try await app.testing().test(.GET, "/plan", headers: session) { res in
                    #expect(res.status == .ok)
                    let html = res.body.string
                    for zone in ClinicalProtocol.bundled.zones {
                        #expect(html.contains("id=\"zone_\(zone.id)\""), "no checkbox for \(zone.id)")
                        if zone.region == "face" || zone.id == "neck" {
                            #expect(html.contains("data-zone=\"\(zone.id)\""), "no map shape for \(zone.id)")
                        }
                    }
                    // Hair loss is offered on the scalp only.
                    #expect(html.contains("name=\"indication_scalp\""))
                    #expect(html.components(separatedBy: "value=\"hair-loss\"").count == 2)
                    // The first session defaults to today in the clinic's zone (the injected clock), and the
                    // practitioner's own licensed maximum fills the depth limit.
                    #expect(html.contains("value=\"2026-11-27\""))
                    #expect(html.contains("id=\"maxDepth\" inputmode=\"decimal\" value=\"1.5\""))
                }
            }
        }

        @Test func aSubmittedPlanShowsDepthLimitTimingSeriesAndAftercare() async throws {
            try await withDermis { app, settings in
                var headers = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                headers.add(contentsOf: formHeaders)
                let body = form([("zone_cheeks", "on"), ("indication_cheeks", "acne-scars"),
                                 ("zone_forehead", "on"), ("indication_forehead", "fine-lines"),
                                 ("indication_neck", "wrinkles"),
                                 ("skin", "thick"), ("device", "skinpen"), ("maxDepth", "1.5"), ("startDate", "2026-12-01")])
                try await app.testing().test(.POST, "/plan", headers: headers, body: body) { res in
                    #expect(res.status == .ok)
                    let html = res.body.string
                    #expect(html.contains("data-zone=\"cheeks\""))
                    #expect(html.contains("1.5 mm <span class=\"limited\">(recommended 2.0 mm, limited by practitioner)"))
                    #expect(html.contains("<td class=\"depth\">0.75 mm\n"))
                    #expect(!html.contains("<tr data-zone=\"neck\""), "an unticked zone was planned")
                    #expect(html.contains("<span class=\"date\">2026-12-01</span>"))
                    #expect(html.contains("4–5 days"))
                    #expect(html.contains("Mineral sunscreen SPF 30+"))
                    #expect(html.contains("Dr. Pen needle depth guide"))
                }
            }
        }

        @Test func aFormWithNoZonesIsRefusedAndKeepsWhatWasTyped() async throws {
            try await withDermis { app, settings in
                var headers = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                headers.add(contentsOf: formHeaders)
                let body = form([("skin", "thin"), ("device", "dermapen"), ("maxDepth", "1.25"), ("startDate", "2026-12-01")])
                try await app.testing().test(.POST, "/plan", headers: headers, body: body) { res in
                    #expect(res.status == .unprocessableEntity)
                    #expect(res.body.string.contains("data-field=\"zones\""))
                    #expect(res.body.string.contains("value=\"1.25\""))
                    #expect(res.body.string.contains("<option value=\"dermapen\" selected>"))
                }
            }
        }

        @Test(arguments: [
            ("maxDepth", "deep", "maxDepth", "not a depth"),
            ("maxDepth", "0", "maxDepth", "above 0"),
            ("startDate", "2026-02-30", "startDate", "not a real date"),
            ("skin", "medium", "skin", "unknown skin thickness"),
            ("device", "microneedler", "device", "unknown device"),
            ("indication_cheeks", "hair-loss", "zones", "not treated on"),
        ])
        func badFieldsAreRefusedBesideTheField(field: String, value: String, shownAt: String, words: String) async throws {
            try await withDermis { app, settings in
                var headers = try await signIn(app, try await makeStaff(app, role: .practitioner), clock: settings.clock)
                headers.add(contentsOf: formHeaders)
                var fields = ["zone_cheeks": "on", "indication_cheeks": "acne-scars", "skin": "thick", "device": "skinpen",
                              "maxDepth": "1.5", "startDate": "2026-12-01"]
                fields[field] = value
                try await app.testing().test(.POST, "/plan", headers: headers, body: form(fields.sorted { $0.key < $1.key })) { res in
                    #expect(res.status == .unprocessableEntity)
                    #expect(res.body.string.contains("data-field=\"\(shownAt)\""))
                    #expect(res.body.string.contains(words))
                    #expect(!res.body.string.contains("id=\"plan-result\""))
                }
            }
        }
    }
}
