"""Two `dermis serve` instances on one PostgreSQL behind nginx (Debian's package), as a chain runs them: a sign-in on one
works on the other; the forgot-password cap is counted across both; 50 concurrent bookings of one slot split across
both let exactly one in; every message is delivered once though both run the outbox worker; the audit chain verifies."""
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import RunningServer, free_port, post_form, run_dermis
from mailserver import MailServer
from test_booking import api, fresh_postgres_database, next_weekday

DESK = "desk@demo.dermis.test"

pytestmark = pytest.mark.skipif(not os.environ.get("DERMIS_TEST_DATABASE_URL") or not shutil.which("nginx"),
                                reason="needs DERMIS_TEST_DATABASE_URL and nginx (scripts/test and install-test-deps provide them)")


class Nginx:
    """nginx in the foreground, round-robin over the instances, passing the client's address on."""

    def __init__(self, folder, upstreams):
        self.port = free_port()
        self.folder = folder
        conf = folder / "nginx.conf"
        servers = "\n".join(f"server 127.0.0.1:{port};" for port in upstreams)
        conf.write_text(f"""
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  upstream dermis {{ {servers} }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://dermis;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)], stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2)
                break
            except OSError:
                import time
                time.sleep(0.1)  # waiting for nginx to listen, not timing a test

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def psql(url, sql):
    return subprocess.run(["psql", url, "-tA", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def chain(tmp_path):
    database = fresh_postgres_database()
    mail = MailServer(tmp_path, free_port()).__enter__()
    key = tmp_path / "chain.key"
    proxy_port = free_port()
    env = {"DATABASE_URL": database, "DERMIS_SECRET_KEY_FILE": str(key), "DERMIS_TRUSTED_PROXIES": "127.0.0.1",
           "DERMIS_SMTP_URL": mail.url(), "DERMIS_SMTP_CA_FILE": str(mail.cert), "DERMIS_MAIL_FROM": "clinic@harbour.example",
           "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{proxy_port}"}
    assert run_dermis("demo", "--data-dir", str(tmp_path / "seed"), env=env)[0] == 0
    first = RunningServer(tmp_path / "a", env=env).wait_ready()
    second = RunningServer(tmp_path / "b", env=env).wait_ready()
    nginx = Nginx(tmp_path, [first.port, second.port])
    try:
        yield nginx, (first, second), env, mail, tmp_path
    finally:
        nginx.stop()
        first.stop()
        second.stop()
        mail.__exit__(None, None, None)


def test_two_instances_share_sessions_limits_bookings_and_the_outbox(chain):
    nginx, (first, second), env, mail, folder = chain
    database = env["DATABASE_URL"]
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(folder / "a"), env=env)
    assert code == 0, err
    token = out.strip().split()[-1]

    # The token (a session in the database) works on each instance, directly and through the balancer.
    for base in (first.base, second.base, nginx.base, nginx.base):
        request = urllib.request.Request(base + "/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    # Forgot-password is capped at 3 links a day per account, counted in the database: 5 asks, alternating, give 3.
    for _ in range(5):
        assert post_form(nginx.base + "/login/forgot", {"email": DESK}, nginx.base)[0] == 200
    assert psql(database, "SELECT count(*) FROM message WHERE kind = 'password-link'") == "3"

    # 50 concurrent bookings of one slot, through the balancer to both instances: exactly one.
    class Server:
        base = nginx.base
    location = json.loads(api(Server, token, "/api/v1/locations")[1])[0]["id"]
    day = next_weekday(6)
    slot = json.loads(api(Server, token, f"/api/v1/availability?location={location}&service=consultation&from={day}&to={day}")[1])["slots"][0]
    booking = {"location": location, "service": "consultation", "start": slot["start"]}
    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = [status for status, _ in pool.map(lambda _: api(Server, token, "/api/v1/appointments", booking), range(50))]
    assert statuses.count(201) == 1 and all(s in (201, 409) for s in statuses), statuses

    # Each message once, though both workers look: 30 more queued at once, all delivered exactly once.
    clinic = psql(database, "SELECT id FROM clinic LIMIT 1")
    psql(database, "INSERT INTO message (id, clinic_id, recipient, subject, body, status, created_at, kind) "
                   f"SELECT gen_random_uuid(), '{clinic}', 'load' || n || '@example.test', 'Load ' || n, 'x', 'queued', now(), 'load' "
                   "FROM generate_series(1, 30) AS n")
    arrived = mail.inbox.wait_for(33, seconds=60)
    ids = [message["Message-ID"] for _, _, message in arrived]
    assert len(ids) == 33 and len(set(ids)) == 33, "a message was sent twice"
    assert psql(database, "SELECT count(*) FROM message WHERE status = 'sent'") == "33"

    first.stop()
    second.stop()
    code, out, err = run_dermis("verify-audit", "--data-dir", str(folder / "a"), env=env)
    assert code == 0 and "intact" in out, err
