"""Running it for real: an online backup of a SQLite data folder that verifies, restores into an empty folder and
serves the same data; a tampered backup is refused naming the file; JSON logs with the request id; SIGTERM drains the
requests in flight and the message being sent, and exits 0."""
import asyncio
import json
import signal
import socket
import sqlite3
import threading
import time
import urllib.request

from conftest import RunningServer, free_port, post_form, run_dermis
from mailserver import Inbox, MailServer
from test_booking import api

DESK = "desk@demo.dermis.test"


def token_for(data):
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(data))
    assert code == 0, err
    return out.strip().split()[-1]


def test_an_online_backup_verifies_restores_and_serves_the_same_data(tmp_path):
    data, backup, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    server = RunningServer(data, extra=("--demo",)).wait_ready()
    try:
        token = token_for(data)
        status, body = api(server, token, "/api/v1/patients", {"givenName": "Ada", "familyName": "Backup-Test",
                                                                "dateOfBirth": "1980-05-05"})
        assert status == 201, body
        patient = json.loads(body)["id"]
        (data / "photos").mkdir(exist_ok=True)
        photo = "0f3c2a8e-4b1d-4c6e-9a7f-2d5e8b1c0a9f.jpg"
        (data / "photos" / photo).write_bytes(b"\xff\xd8 not really a photo")
        (data / "photos" / ".upload-in-progress").write_bytes(b"partial")
        # While the server runs and serves.
        code, out, err = run_dermis("backup", "--to", str(backup), "--data-dir", str(data))
        assert code == 0, err
        assert "Backed up" in out
    finally:
        server.stop()

    manifest = json.loads((backup / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"dermis.sqlite", "secret.key", f"photos/{photo}"} <= paths and "photos/.upload-in-progress" not in paths
    assert (backup.stat().st_mode & 0o777) == 0o700 and all((backup / p).stat().st_mode & 0o777 == 0o600 for p in paths)
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    code, out, err = run_dermis("backup", "--verify", str(backup))
    assert code == 0 and "verifies" in out, err

    code, out, err = run_dermis("restore", "--from", str(backup), "--data-dir", str(restored))
    assert code == 0, err
    assert (restored / "secret.key").stat().st_mode & 0o777 == 0o600
    code, out, err = run_dermis("verify-audit", "--data-dir", str(restored))
    assert code == 0 and "intact" in out, err
    server = RunningServer(restored).wait_ready()
    try:
        status, body = api(server, token, f"/api/v1/patients/{patient}")
        assert status == 200 and json.loads(body)["familyName"] == "Backup-Test"
    finally:
        server.stop()

    # Into a folder that is not empty: refused, nothing overwritten.
    before = (restored / "dermis.sqlite").read_bytes()
    code, _, err = run_dermis("restore", "--from", str(backup), "--data-dir", str(restored))
    assert code == 1 and "not empty" in err and (restored / "dermis.sqlite").read_bytes() == before
    code, _, err = run_dermis("backup", "--to", str(backup), "--data-dir", str(data))
    assert code == 1 and "--to" in err and "not empty" in err
    code, _, err = run_dermis("backup", "--data-dir", str(data))
    assert code != 0 and "--to DIR" in err


def test_a_tampered_or_incomplete_backup_is_refused_naming_the_file(tmp_path):
    data, backup = tmp_path / "data", tmp_path / "backup"
    assert run_dermis("demo", "--data-dir", str(data))[0] == 0
    assert run_dermis("backup", "--to", str(backup), "--data-dir", str(data))[0] == 0
    photo = backup / "extra.txt"
    photo.write_text("slipped in")
    database = backup / "dermis.sqlite"
    raw = bytearray(database.read_bytes())
    raw[-100] ^= 0xFF
    database.write_bytes(bytes(raw))
    (backup / "secret.key").unlink()
    code, _, err = run_dermis("backup", "--verify", str(backup))
    assert code == 1
    assert "dermis.sqlite: changed since the backup" in err and "secret.key: missing" in err and "extra.txt: not in the manifest" in err
    code, _, err = run_dermis("restore", "--from", str(backup), "--data-dir", str(tmp_path / "restored"))
    assert code == 1 and "does not verify" in err and not (tmp_path / "restored" / "dermis.sqlite").exists()
    code, _, err = run_dermis("backup", "--verify", str(tmp_path))
    assert code == 1 and "manifest.json is missing" in err
    # A crafted manifest naming a file outside the backup, or a link in place of a file, is refused.
    crafted = tmp_path / "crafted"
    assert run_dermis("backup", "--to", str(crafted), "--data-dir", str(data))[0] == 0
    manifest = json.loads((crafted / "manifest.json").read_text())
    manifest["files"].append({"path": "../data/dermis.sqlite", "bytes": 1, "sha256": "0" * 64})
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    (crafted / "secret.key").unlink()
    (crafted / "secret.key").symlink_to(data / "secret.key")
    code, _, err = run_dermis("backup", "--verify", str(crafted))
    assert code == 1 and "../data/dermis.sqlite: not a path inside the backup" in err and "secret.key: not a plain file" in err
    # A linked folder bringing in a file from elsewhere, listed with its true size and SHA-256, is refused too.
    import hashlib
    import shutil
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "taken.jpg").write_bytes(b"not from this backup")
    shutil.rmtree(crafted / "photos", ignore_errors=True)
    (crafted / "photos").symlink_to(outside, target_is_directory=True)
    manifest["files"].append({"path": "photos/taken.jpg", "bytes": 20, "sha256": hashlib.sha256(b"not from this backup").hexdigest()})
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_dermis("backup", "--verify", str(crafted))
    assert code == 1 and "photos/taken.jpg: not a path inside the backup" in err, err


def test_json_logs_carry_the_request_id_and_sigterm_exits_cleanly(tmp_path):
    server = RunningServer(tmp_path / "data", env={"DERMIS_LOG_FORMAT": "json", "LOG_LEVEL": "debug"}, extra=("--demo",)).wait_ready()
    try:
        with urllib.request.urlopen(server.base + "/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert events and all({"time", "level", "label", "message"} <= event.keys() for event in events)
    requests = [e for e in events if e["message"].startswith("GET /healthz 200")]
    assert requests and requests[0]["metadata"]["request-id"] and requests[0]["message"].endswith(" ms")


class HeldInbox(Inbox):
    """Holds the first message's DATA until the test lets it go, so the server is stopped while it sends."""

    def __init__(self):
        super().__init__()
        self.arrived, self.release = threading.Event(), threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if not self.arrived.is_set():
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_sigterm_finishes_the_request_in_flight_and_the_message_being_sent_then_exits_0(tmp_path):
    data = tmp_path / "data"
    inbox = HeldInbox()
    with MailServer(tmp_path, free_port(), inbox=inbox) as mail:
        env = {"DERMIS_SMTP_URL": mail.url(), "DERMIS_SMTP_CA_FILE": str(mail.cert), "DERMIS_MAIL_FROM": "clinic@harbour.example"}
        # Three messages queued while no mail server is configured (password links, capped at three a day) ...
        queued = RunningServer(data, extra=("--demo",)).wait_ready()
        try:
            for _ in range(3):
                assert post_form(queued.base + "/login/forgot", {"email": DESK}, queued.base)[0] == 200
        finally:
            queued.stop()
        # ... so the worker of the next server claims all three in its first pass.
        # (LOG_LEVEL=trace: Vapor logs each request head it decodes, which tells the test its request is in flight.)
        server = RunningServer(data, env={**env, "LOG_LEVEL": "trace"}).wait_ready()
        try:
            assert inbox.arrived.wait(30), "the first message never reached the mail server"

            # A sign-in whose body is half sent when SIGTERM arrives: it must still be answered, after its database look-up.
            body = b"email=nobody%40example.test&password=not-the-password"
            request = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            request.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\n"
                            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
                            % (server.port, server.base.encode(), len(body)) + body[:12])
            deadline = time.monotonic() + 30
            while "uri: \"/login\"" not in server.output():
                assert server.process.poll() is None and time.monotonic() < deadline, "the server never read the request's head"
            server.process.send_signal(signal.SIGTERM)
            while listening(server.port):
                assert server.process.poll() is None and time.monotonic() < deadline, "the server kept listening after SIGTERM"
            assert server.process.poll() is None, "the server exited with a request in flight"
            request.sendall(body[12:])
            answer = b""
            while chunk := request.recv(65536):
                answer += chunk
                if b"</html>" in answer:
                    break
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]

            # The message being sent finishes; then the server exits cleanly.
            assert server.process.poll() is None, "the server exited while a message was being sent"
            inbox.release.set()
            assert server.process.wait(timeout=30) == 0, server.output()
        finally:
            inbox.release.set()
            if server.process.poll() is None:
                server.process.kill()

        db = sqlite3.connect(data / "dermis.sqlite")
        rows = db.execute("SELECT status, attempts FROM message WHERE kind = 'password-link' ORDER BY created_at").fetchall()
        db.close()
        assert len(inbox.messages) == 1
        assert rows[0] == ("sent", 1), rows
        # The two not yet tried went back untried, due at once, not after a claim's lease.
        assert [attempts for _, attempts in rows[1:]] == [0, 0], rows

        again = RunningServer(data, env=env).wait_ready()
        try:
            inbox.wait_for(3)
        finally:
            again.stop()
        assert len({message["Message-ID"] for _, _, message in inbox.messages}) == 3


def test_the_server_backs_itself_up_on_schedule_and_the_cli_rotates_the_same_folder(tmp_path):
    data, backups = tmp_path / "data", tmp_path / "backups"
    code, _, err = run_dermis("serve", "--data-dir", str(data), env={"DERMIS_BACKUP_DIR": str(backups), "DERMIS_BACKUP_HOURS": "0"})
    assert code == 2 and "DERMIS_BACKUP_HOURS" in err and "from 1 to 168" in err, err

    server = RunningServer(data, env={"DERMIS_BACKUP_DIR": str(backups), "DERMIS_BACKUP_KEEP": "1"}, extra=("--demo",)).wait_ready()
    try:
        deadline = time.monotonic() + 60
        while not list(backups.glob("dermis-backup-*/manifest.json")):
            assert time.monotonic() < deadline, "no scheduled backup was written at start"
            time.sleep(0.1)  # polling for the backup, not timing a test
    finally:
        server.stop()
    [first] = list(backups.glob("dermis-backup-*"))
    code, out, err = run_dermis("backup", "--verify", str(first))
    assert code == 0, err

    # Folders are named to the second: the server's one is given an older name, so the next cannot take the same one.
    first = first.rename(backups / "dermis-backup-20200101T000000Z")
    code, out, err = run_dermis("backup", "--into", str(backups), "--keep", "1", "--data-dir", str(data))
    assert code == 0 and "removed 1 older backup" in out, err
    [second] = list(backups.glob("dermis-backup-*"))
    assert second.name > first.name and not first.exists()
    code, _, err = run_dermis("backup", "--into", str(backups), "--keep", "0", "--data-dir", str(data))
    assert code == 2 and "--keep" in err


def test_a_postgresql_dump_restores_into_an_empty_database_and_serves(tmp_path):
    """The README's pg_dump / pg_restore commands, run for real: the restored database serves the same patient."""
    import os
    import subprocess

    import pytest

    from test_booking import fresh_postgres_database

    if not os.environ.get("DERMIS_TEST_DATABASE_URL"):
        pytest.skip("needs DERMIS_TEST_DATABASE_URL (scripts/test sets it)")
    source, target = fresh_postgres_database(), fresh_postgres_database()
    data = tmp_path / "data"
    server = RunningServer(data, env={"DATABASE_URL": source}, extra=("--demo",)).wait_ready()
    try:
        token = token_for_database(data, source)
        status, body = api(server, token, "/api/v1/patients", {"givenName": "Pia", "familyName": "Dump-Test", "dateOfBirth": "1975-07-07"})
        assert status == 201, body
        patient = json.loads(body)["id"]
    finally:
        server.stop()
    dump = tmp_path / "dermis.dump"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), source], check=True, capture_output=True)
    subprocess.run(["pg_restore", "--no-owner", "--dbname", target, str(dump)], check=True, capture_output=True)
    server = RunningServer(data, env={"DATABASE_URL": target}).wait_ready()
    try:
        status, body = api(server, token, f"/api/v1/patients/{patient}")
        assert status == 200 and json.loads(body)["familyName"] == "Dump-Test"
        status, body = api(server, token, "/api/v1/patients?q=ump-te")
        assert status == 200 and [p["familyName"] for p in json.loads(body)["patients"]] == ["Dump-Test"]
    finally:
        server.stop()
    code, out, err = run_dermis("verify-audit", "--data-dir", str(data), env={"DATABASE_URL": target})
    assert code == 0 and "intact" in out, err


def token_for_database(data, database_url):
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(data), env={"DATABASE_URL": database_url})
    assert code == 0, err
    return out.strip().split()[-1]
