import CoreMetrics
import Fluent
import Foundation
import NIOConcurrencyHelpers
import Prometheus
import SQLKit
import Vapor

/// What an operator watches, through swift-metrics into a Prometheus registry of this application's own (no process-wide
/// bootstrap, so every application — and every test — counts apart): requests and their latency by route pattern
/// (never by path, which carries ids), 429 refusals, sign-in failures, audit append latency, outbox failures; and, read
/// when scraped, the outbox by status and the age of the oldest message waiting.
final class DermisMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Seconds, from a millisecond to ten: a page, a query, a commit.
        factory.defaultDurationHistogramBuckets = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                                   .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                                   .seconds(1), .seconds(2), .seconds(5), .seconds(10)]
        self.factory = factory
    }

    private struct RequestKey: Hashable {
        let method: String
        let route: ObjectIdentifier?
        let status: UInt
    }

    /// The request counter and timer of each method, route and status, made once: a registry look-up by name and labels
    /// on every request costs more than the request's own work on the lightest routes.
    private let requestHandles = NIOLockedValueBox<[RequestKey: (CoreMetrics.Counter, CoreMetrics.Timer)]>([:])
    private let refusalHandles = NIOLockedValueBox<[String: CoreMetrics.Counter]>([:])

    func request(method: HTTPMethod, route: Route?, pattern: String, status: HTTPStatus, took: Duration) {
        let key = RequestKey(method: method.rawValue, route: route.map(ObjectIdentifier.init), status: status.code)
        let (counter, timer) = requestHandles.withLockedValue { handles in
            if let found = handles[key] { return found }
            let made = (Counter(label: "dermis_http_requests_total", dimensions: [("method", method.rawValue), ("route", pattern), ("status", "\(status.code)")],
                                factory: factory),
                        Timer(label: "dermis_http_request_duration_seconds", dimensions: [("method", method.rawValue), ("route", pattern)], factory: factory))
            handles[key] = made
            return made
        }
        counter.increment()
        timer.record(duration: took)
        if status == .tooManyRequests {
            // Made once per route too: refusals come in floods.
            refusalHandles.withLockedValue { handles in
                if let found = handles[pattern] { return found }
                let made = Counter(label: "dermis_rate_limit_refusals_total", dimensions: [("route", pattern)], factory: factory)
                handles[pattern] = made
                return made
            }.increment()
        }
    }

    func signInFailed() {
        Counter(label: "dermis_sign_in_failures_total", factory: factory).increment()
    }

    func auditAppended(took: Duration) {
        Timer(label: "dermis_audit_append_duration_seconds", factory: factory).record(duration: took)
    }

    func outboxFailed(dead: Bool) {
        Counter(label: "dermis_outbox_send_failures_total", dimensions: [("outcome", dead ? "dead" : "retry")], factory: factory).increment()
    }

    /// The exposition text, with the database pool and the outbox read now.
    func scrape(db: any Database, poolSize: Int, now: Date) async throws -> String {
        // The pool keeps no public count of connections in use, so the scrape times what a request would wait for: a
        // pooled connection and one trivial query. It climbs towards the pool's timeout when every connection is busy.
        Gauge(label: "dermis_database_pool_max_connections", factory: factory).record(poolSize)
        let started = ContinuousClock.now
        if let sql = db as? any SQLDatabase { _ = try await sql.raw("SELECT 1").all() }
        Gauge(label: "dermis_database_round_trip_seconds", factory: factory).record((ContinuousClock.now - started).seconds)
        for status in OutboxStatus.allCases {
            let count = try await OutboxMessage.query(on: db).filter(\.$status == status.rawValue).count()
            Gauge(label: "dermis_outbox_messages", dimensions: [("status", status.rawValue)], factory: factory).record(count)
        }
        // The longest a due message has waited: one held for quiet hours or a retry's backoff is not yet due. Two
        // one-row reads (due since it was written; due since its hold ended), never the whole backlog.
        let waiting = OutboxMessage.query(on: db).filter(\.$status ~~ [OutboxStatus.queued.rawValue, OutboxStatus.retry.rawValue])
        let since = [
            try await waiting.copy().filter(\.$notBefore == nil).sort(\.$createdAt).first()?.createdAt,
            try await waiting.copy().filter(\.$notBefore <= now).sort(\.$notBefore).first()?.notBefore,
        ].compactMap { $0 }
        let oldest = since.map { now.timeIntervalSince($0) }.max() ?? 0
        Gauge(label: "dermis_outbox_oldest_due_age_seconds", factory: factory).record(max(0, oldest))
        return registry.emitToString()
    }
}

extension Application {
    private struct MetricsKey: StorageKey { typealias Value = DermisMetrics }

    var metrics: DermisMetrics {
        if let metrics = storage[MetricsKey.self] { return metrics }
        let metrics = DermisMetrics()
        storage[MetricsKey.self] = metrics
        return metrics
    }
}

/// `GET /metrics` in Prometheus text format, for a scraper holding `DERMIS_METRICS_TOKEN` (as a bearer token); without
/// the setting there is no such page (404), so nothing is exposed by default.
struct MetricsController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("metrics", use: metrics).access(.open).checkingOwnBearer()
    }

    func metrics(req: Request) async throws -> Response {
        guard let expected = req.dermis.settings.metricsToken, !expected.isEmpty else { throw Abort(.notFound) }
        let given = req.headers.bearerAuthorization?.token ?? ""
        guard Secrets.digest(given) == Secrets.digest(expected) else {
            var headers = HTTPHeaders()
            headers.add(name: .wwwAuthenticate, value: "Bearer")
            throw Abort(.unauthorized, headers: headers)
        }
        let text = try await req.application.metrics.scrape(db: req.db, poolSize: DatabaseSetup.poolSize(req.application),
                                                           now: req.dermis.clock.now())
        var headers = HTTPHeaders()
        headers.contentType = HTTPMediaType(type: "text", subType: "plain", parameters: ["version": "0.0.4", "charset": "utf-8"])
        return Response(status: .ok, headers: headers, body: .init(string: text))
    }
}
