"""`dermis serve`: one command on SQLite, the same on PostgreSQL with DATABASE_URL, refusal of a bad protocol."""
import os
import sqlite3
import urllib.request

import pytest

from conftest import RunningServer, run_dermis


def test_serve_on_sqlite_creates_a_durable_database_under_the_data_dir(server, data_dir):
    with urllib.request.urlopen(server.base + "/", timeout=10) as response:
        page = response.read().decode()
    assert "Harbour Skin Clinic" in page and "Demo clinic" in page
    # The demo staff got random passwords, printed once: four sign-ins, none alike.
    logins = server.demo_logins()
    assert len(logins) == 4 and len(set(logins.values())) == 4
    database = data_dir / "dermis.sqlite"
    assert database.exists()
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.skipif(not os.environ.get("DERMIS_TEST_DATABASE_URL"), reason="needs DERMIS_TEST_DATABASE_URL (scripts/test sets it)")
def test_serve_on_postgresql_with_database_url(tmp_path):
    running = RunningServer(tmp_path / "unused", env={"DATABASE_URL": os.environ["DERMIS_TEST_DATABASE_URL"]},
                            extra=("--demo",)).wait_ready()
    try:
        with urllib.request.urlopen(running.base + "/", timeout=10) as response:
            assert "Harbour Skin Clinic" in response.read().decode()
        assert not (tmp_path / "unused" / "dermis.sqlite").exists()
    finally:
        running.stop()


def test_serve_refuses_an_invalid_protocol_file(tmp_path):
    override = tmp_path / "protocol.json"
    override.write_text('{"version": "x"}')
    code, _, err = run_dermis("serve", "--data-dir", str(tmp_path / "data"), "--port", "1", "--protocol", str(override))
    assert code == 2
    assert "is invalid" in err and "title: is required but missing" in err


def test_demo_command_seeds_once_and_migrate_is_idempotent(tmp_path):
    for _ in range(2):
        code, out, err = run_dermis("demo", "--data-dir", str(tmp_path / "data"))
        assert code == 0, err
    code, _, err = run_dermis("migrate", "--data-dir", str(tmp_path / "data"))
    assert code == 0, err
    with sqlite3.connect(tmp_path / "data" / "dermis.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM clinic").fetchone()[0] == 1
