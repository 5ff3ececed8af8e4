"""Accounts from the command line and the first-run page: create-admin, create-token, verify-audit, /setup."""
import json
import re
import sqlite3
import urllib.error
import urllib.request

from conftest import RunningServer, post_form, run_dermis


def create_admin(data_dir, email="owner@clinic.example", password="a long enough passphrase"):
    return run_dermis("create-admin", "--email", email, "--name", "Clinic Owner", "--clinic-name", "Test Clinic",
                      "--time-zone", "Europe/Paris", "--password-stdin", "--data-dir", str(data_dir), stdin=password + "\n")


def test_create_admin_then_a_token_that_works_against_the_api(tmp_path):
    data = tmp_path / "data"
    code, out, err = create_admin(data)
    assert code == 0, err
    assert "owner@clinic.example" in out and "authenticator" in out
    with sqlite3.connect(data / "dermis.sqlite") as db:
        digest = db.execute("SELECT password_hash FROM staff_user").fetchone()[0]
        assert digest.startswith("$2b$12$")
        assert db.execute("SELECT name, time_zone FROM clinic").fetchone() == ("Test Clinic", "Europe/Paris")
    code, token, err = run_dermis("create-token", "--email", "owner@clinic.example", "--name", "ci", "--data-dir", str(data))
    assert code == 0, err
    token = token.strip()
    assert len(token) >= 40
    with sqlite3.connect(data / "dermis.sqlite") as db:
        stored = db.execute("SELECT token_hash FROM api_token").fetchone()[0]
        assert stored != token
    server = RunningServer(data).wait_ready()
    try:
        request = urllib.request.Request(server.base + "/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"patients": []}
        try:
            urllib.request.urlopen(urllib.request.Request(server.base + "/api/v1/patients",
                                                          headers={"Authorization": "Bearer " + token[:-2] + "xx"}), timeout=10)
            raise AssertionError("a wrong token was accepted")
        except urllib.error.HTTPError as error:
            assert error.code == 401
    finally:
        server.stop()


def test_create_admin_refuses_bad_input_with_exit_2(tmp_path):
    data = tmp_path / "data"
    code, out, err = create_admin(data, password="short")
    assert code == 2 and out == "" and "password: must be at least 8 characters" in err
    assert create_admin(data)[0] == 0
    code, _, err = create_admin(data)
    assert code == 2 and "email: a staff member with this email already exists" in err
    code, _, err = run_dermis("create-token", "--email", "nobody@clinic.example", "--data-dir", str(data))
    assert code == 2 and "--email" in err
    code, _, err = run_dermis("create-token", "--email", "owner@clinic.example", "--expires-days", "400", "--data-dir", str(data))
    assert code == 2 and "--expires-days" in err


def test_verify_audit_names_the_first_tampered_row(tmp_path):
    data = tmp_path / "data"
    assert create_admin(data)[0] == 0
    code, token, _ = run_dermis("create-token", "--email", "owner@clinic.example", "--data-dir", str(data))
    server = RunningServer(data).wait_ready()
    try:
        for _ in range(3):
            request = urllib.request.Request(server.base + "/api/v1/patients", headers={"Authorization": f"Bearer {token.strip()}"})
            urllib.request.urlopen(request, timeout=10).read()
    finally:
        server.stop()
    code, out, err = run_dermis("verify-audit", "--data-dir", str(data))
    assert code == 0, err
    assert "intact (3 rows)" in out
    with sqlite3.connect(data / "dermis.sqlite") as db:
        try:
            db.execute("UPDATE audit_event SET outcome = 'denied' WHERE seq = 2")
            raise AssertionError("the audit log accepted an UPDATE")
        except sqlite3.DatabaseError as error:
            assert "append-only" in str(error)
        db.execute("DROP TRIGGER audit_event_no_update")
        db.execute("UPDATE audit_event SET outcome = 'denied' WHERE seq = 2")
    code, _, err = run_dermis("verify-audit", "--data-dir", str(data))
    assert code == 1
    assert "seq 2" in err


def test_the_first_run_page_wants_the_code_serve_printed_then_disappears(tmp_path):
    server = RunningServer(tmp_path / "data").wait_ready()
    try:
        match = re.search(r"setup code\s+([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})", server.output())
        assert match, server.output()
        code = match.group(1)
        with urllib.request.urlopen(server.base + "/setup", timeout=10) as response:
            assert response.status == 200
        fields = {"clinicName": "Setup Clinic", "timeZone": "UTC", "name": "First", "email": "first@clinic.example"}
        # A forged "local" address is worth nothing: without the code, no admin.
        status, body, _ = post_form(server.base + "/setup", {**fields, "password": "a long enough passphrase", "setupCode": "WRNG-WRNG-WRNG-WRNG"},
                                    server.base, headers={"X-Forwarded-For": "127.0.0.1"})
        assert status == 403 and "setupCode" in body
        status, body, _ = post_form(server.base + "/setup", {**fields, "password": "short", "setupCode": code}, server.base)
        assert status == 422 and "password" in body
        status, _, headers = post_form(server.base + "/setup", {**fields, "password": "a long enough passphrase", "setupCode": code},
                                       server.base)
        assert status == 303 and headers["Location"] == "/login"
        try:
            urllib.request.urlopen(server.base + "/setup", timeout=10)
            raise AssertionError("/setup is still open after the first admin")
        except urllib.error.HTTPError as error:
            assert error.code == 404
        status, _, _ = post_form(server.base + "/setup", {"clinicName": "X", "timeZone": "UTC", "name": "Second", "setupCode": code,
                                                         "email": "second@clinic.example", "password": "a long enough passphrase"},
                                 server.base)
        assert status == 404
    finally:
        server.stop()


def test_a_cross_site_post_is_refused(tmp_path):
    server = RunningServer(tmp_path / "data", extra=("--demo",)).wait_ready()
    try:
        status, _, _ = post_form(server.base + "/login", {"email": "desk@demo.dermis.test", "password": "x"}, "https://evil.example")
        assert status == 403
    finally:
        server.stop()


def test_verify_audit_finds_the_newest_rows_deleted_against_the_checkpoint(tmp_path):
    data = tmp_path / "data"
    assert create_admin(data)[0] == 0
    code, token, _ = run_dermis("create-token", "--email", "owner@clinic.example", "--data-dir", str(data))
    server = RunningServer(data).wait_ready()
    try:
        for _ in range(5):
            request = urllib.request.Request(server.base + "/api/v1/patients", headers={"Authorization": f"Bearer {token.strip()}"})
            urllib.request.urlopen(request, timeout=10).read()
    finally:
        server.stop()
    checkpoints = json.loads((data / "audit-checkpoints.json").read_text())
    with sqlite3.connect(data / "dermis.sqlite") as db:
        newest = db.execute("SELECT max(seq) FROM audit_event").fetchone()[0]
    assert max(head["seq"] for head in checkpoints) == newest, "the server anchored its newest row when it stopped"
    assert "audit checkpoint" in server.output(), "and wrote the head to its log"
    assert run_dermis("verify-audit", "--data-dir", str(data))[0] == 0
    # Someone with the database file drops the guard and deletes the two newest rows: the rest still links up.
    with sqlite3.connect(data / "dermis.sqlite") as db:
        db.execute("DROP TRIGGER audit_event_no_delete")
        db.execute("DELETE FROM audit_event WHERE seq > ?", (newest - 2,))
    code, _, err = run_dermis("verify-audit", "--data-dir", str(data))
    assert code == 1
    assert "removed from the end" in err and f"seq {newest}" in err
