"""A local stand-in for a Twilio-style Messages API: records each form POST (with its basic-auth credentials) and
answers with the statuses it is told to, in order (then 201)."""
import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SMSSink:
    def __init__(self, port):
        self.port = port
        self.received = []
        self.answers = []
        self.lock = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                auth = self.headers.get("Authorization", "")
                user = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else None
                with sink.lock:
                    sink.received.append({"path": self.path, "auth": user, "form": form,
                                          "content_type": self.headers.get("Content-Type", "")})
                    status, body = sink.answers.pop(0) if sink.answers else (201, {"sid": "SM" + "0" * 32, "status": "queued"})
                    sink.lock.notify_all()
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/AC0001/Messages.json"

    def answer(self, *answers):
        with self.lock:
            self.answers.extend(answers)

    def wait_for(self, count, seconds=30):
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.received) >= count, timeout=seconds):
                raise AssertionError(f"expected {count} SMS, got {len(self.received)}")
            return list(self.received)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
