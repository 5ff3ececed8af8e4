"""R14 against a running server on each database: 50 concurrent bookings of one slot let exactly one in; the .ics of a
booking parses in a real iCalendar library."""
import datetime
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import RunningServer, run_dermis

DESK = "desk@demo.dermis.test"


def fresh_postgres_database():
    """A new, empty database on the test PostgreSQL server (DERMIS_TEST_DATABASE_URL), so this server starts clean."""
    base = os.environ["DERMIS_TEST_DATABASE_URL"]
    name = "dermis_r14_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", base, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def api(server, token, path, body=None, method=None):
    request = urllib.request.Request(server.base + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method or ("POST" if body is not None else "GET"),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(params=["sqlite", "postgresql"])
def booking_server(request, tmp_path):
    env = {}
    if request.param == "postgresql":
        if not os.environ.get("DERMIS_TEST_DATABASE_URL"):
            pytest.skip("needs DERMIS_TEST_DATABASE_URL (scripts/test sets it)")
        env = {"DATABASE_URL": fresh_postgres_database()}
    server = RunningServer(tmp_path / "data", env=env, extra=("--demo",)).wait_ready()
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(tmp_path / "data"), env=env)
    assert code == 0, err
    yield server, out.strip().split()[-1]
    server.stop()


def next_weekday(days_ahead=3):
    day = datetime.date.today() + datetime.timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += datetime.timedelta(days=1)
    return day.isoformat()


def test_fifty_concurrent_bookings_for_one_slot_let_exactly_one_in(booking_server):
    server, token = booking_server
    status, body = api(server, token, "/api/v1/locations")
    assert status == 200, body
    location = json.loads(body)[0]["id"]
    day = next_weekday()
    status, body = api(server, token, f"/api/v1/availability?location={location}&service=consultation&from={day}&to={day}")
    assert status == 200, body
    slot = json.loads(body)["slots"][0]
    booking = {"location": location, "service": "consultation", "start": slot["start"], "practitioner": slot["practitionerID"]}

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda _: api(server, token, "/api/v1/appointments", booking), range(50)))
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 49, statuses
    refused = json.loads(next(body for status, body in results if status == 409))
    assert refused["error"]["code"] == "conflict" and refused["alternatives"], refused
    assert all(alternative["start"] != slot["start"] or alternative["practitionerID"] != slot["practitionerID"]
               for alternative in refused["alternatives"])

    status, body = api(server, token, f"/api/v1/appointments?location={location}&from={day}&to={day}")
    booked = [a for a in json.loads(body) if a["status"] == "booked"]
    assert len(booked) == 1 and booked[0]["start"] == slot["start"]


def test_a_booking_invitation_parses_with_its_time_zone(booking_server):
    icalendar = pytest.importorskip("icalendar")
    server, token = booking_server
    location = json.loads(api(server, token, "/api/v1/locations")[1])[0]["id"]
    day = next_weekday(10)
    slot = json.loads(api(server, token, f"/api/v1/availability?location={location}&service=consultation&from={day}&to={day}")[1])["slots"][2]
    status, body = api(server, token, "/api/v1/appointments", {"location": location, "service": "consultation", "start": slot["start"]})
    assert status == 201, body
    appointment = json.loads(body)["id"]
    request = urllib.request.Request(f"{server.base}/api/v1/appointments/{appointment}", headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(request, timeout=10).status == 200
    # The .ics is a page route: signed-in staff (the bearer token counts) download it.
    request = urllib.request.Request(f"{server.base}/appointments/{appointment}/calendar.ics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/calendar")
        calendar = icalendar.Calendar.from_ical(response.read())
    event = next(component for component in calendar.walk() if component.name == "VEVENT")
    start = event.decoded("DTSTART")
    assert str(start.tzinfo) in ("Europe/London", "GMT", "BST") or getattr(start.tzinfo, "key", "") == "Europe/London"
    expected = datetime.datetime.fromisoformat(slot["start"].replace("Z", "+00:00"))
    assert start == expected
    assert any(component.name == "VTIMEZONE" for component in calendar.walk())
