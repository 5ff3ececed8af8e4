"""A local payment provider speaking the subset of Stripe's API that Dermis uses, for tests: Checkout Sessions (create,
retrieve, a hosted page the payer pays on), Refunds (with Idempotency-Key, never more than was paid), bearer-key
authentication, and webhooks signed as Stripe signs them (`Stripe-Signature: t=…,v1=HMAC-SHA256("t.body")`).
The test drives the webhooks: held back, sent out of order, replayed, or forged."""
import hashlib
import hmac
import html
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "sk_test_fakepay_0123456789"
WEBHOOK_SECRET = "whsec_fakepay_0123456789"


def sign(payload: bytes, secret=WEBHOOK_SECRET, at=None):
    t = int(at if at is not None else time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class FakePay:
    def __init__(self, port):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.webhook_url = None
        self.sessions = {}
        self.refunds = {}
        self.idempotent = {}
        self.events = []
        self.hold_webhooks = False
        self.held = []
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self):
                if self.headers.get("Authorization") != f"Bearer {SECRET}":
                    self.reply(401, {"error": {"message": "Invalid API Key provided"}})
                    return False
                return True

            def form(self):
                length = int(self.headers.get("Content-Length") or 0)
                return {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}

            def do_GET(self):
                path = urllib.parse.urlparse(self.path).path
                if path.startswith("/v1/checkout/sessions/"):
                    if not self.authorised():
                        return
                    session = fake.sessions.get(path.rsplit("/", 1)[1])
                    return self.reply(200, fake.public(session)) if session else self.reply(404, {"error": {"message": "No such checkout.session"}})
                if path.startswith("/pay/"):
                    session = fake.sessions.get(path.rsplit("/", 1)[1])
                    if not session:
                        return self.reply(404, b"no such checkout", "text/plain")
                    amount = f"{session['currency'].upper()} {session['amount_total'] / 100:.2f}"
                    page = (f"<!doctype html><html lang='en'><head><title>Pay {amount}</title></head><body><main><h1>Pay {amount}</h1>"
                            f"<p id='what'>{html.escape(session['name'])}</p>"
                            f"<form method='post' action='/pay/{session['id']}'><label>Card number <input name='card' id='card'></label>"
                            f"<button type='submit' id='pay'>Pay {amount}</button></form>"
                            f"<p><a href='{html.escape(session['cancel_url'])}' id='cancel'>Cancel</a></p></main></body></html>")
                    return self.reply(200, page.encode(), "text/html; charset=utf-8")
                self.reply(404, {"error": {"message": "Unrecognized request URL"}})

            def do_POST(self):
                path = urllib.parse.urlparse(self.path).path
                if path == "/v1/checkout/sessions":
                    if not self.authorised():
                        return
                    form = self.form()
                    key = self.headers.get("Idempotency-Key")
                    with fake.lock:
                        if key and key in fake.idempotent:
                            return self.reply(200, fake.public(fake.sessions[fake.idempotent[key]]))
                        sid = f"cs_test_{next(fake.counter)}"
                        fake.sessions[sid] = {
                            "id": sid, "object": "checkout.session", "url": f"{fake.base}/pay/{sid}", "status": "open",
                            "payment_status": "unpaid", "payment_intent": None,
                            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                            "currency": form["line_items[0][price_data][currency]"],
                            "client_reference_id": form.get("client_reference_id"), "success_url": form["success_url"],
                            "cancel_url": form["cancel_url"], "name": form.get("line_items[0][price_data][product_data][name]", ""),
                            "refunded": 0}
                        if key:
                            fake.idempotent[key] = sid
                    return self.reply(200, fake.public(fake.sessions[sid]))
                if path == "/v1/refunds":
                    if not self.authorised():
                        return
                    form = self.form()
                    key = self.headers.get("Idempotency-Key")
                    with fake.lock:
                        if key and key in fake.refunds:
                            return self.reply(200, fake.refunds[key])
                        session = next((s for s in fake.sessions.values() if s["payment_intent"] == form.get("payment_intent")), None)
                        amount = int(form.get("amount", "0"))
                        if not session or amount <= 0 or session["refunded"] + amount > session["amount_total"]:
                            return self.reply(400, {"error": {"message": "Refund amount exceeds the charge, or no such payment"}})
                        session["refunded"] += amount
                        refund = {"id": f"re_{next(fake.counter)}", "object": "refund", "status": "succeeded", "amount": amount,
                                  "payment_intent": session["payment_intent"]}
                        fake.refunds[key or refund["id"]] = refund
                    fake.event("charge.refunded", {"id": f"ch_{session['id']}", "object": "charge", "amount_refunded": session["refunded"]})
                    return self.reply(200, refund)
                if path.startswith("/pay/"):
                    sid = path.rsplit("/", 1)[1]
                    self.form()
                    with fake.lock:
                        session = fake.sessions.get(sid)
                        if not session or session["status"] != "open":
                            return self.reply(409, b"this checkout is closed", "text/plain")
                        session.update(status="complete", payment_status="paid", payment_intent=f"pi_{sid}", url=None)
                    fake.event("checkout.session.completed", fake.public(session))
                    self.send_response(303)
                    self.send_header("Location", session["success_url"])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.reply(404, {"error": {"message": "Unrecognized request URL"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    @staticmethod
    def public(session):
        return {k: v for k, v in session.items() if k not in ("success_url", "cancel_url", "name", "refunded")}

    def event(self, kind, obj):
        """Makes an event and delivers it now, or holds it back when `hold_webhooks` is set."""
        event = {"id": f"evt_{next(self.counter)}", "object": "event", "type": kind, "created": int(time.time()), "data": {"object": obj}}
        self.events.append(event)
        if self.hold_webhooks:
            self.held.append(event)
        else:
            self.deliver(event)
        return event

    def deliver(self, event, secret=WEBHOOK_SECRET, at=None, signature=None):
        """POSTs the event to Dermis's webhook as Stripe would; returns (status, body)."""
        payload = json.dumps(event).encode()
        request = urllib.request.Request(self.webhook_url, data=payload, method="POST", headers={
            "Content-Type": "application/json", "Stripe-Signature": signature if signature is not None else sign(payload, secret, at)})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
