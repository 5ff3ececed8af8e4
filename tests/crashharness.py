"""Crash safety (docs/SECURITY.md R15): a steady write load against `dermis serve`, the server killed with SIGKILL at a
random moment, restarted, and every write it acknowledged checked to be there and intact; the audit chain verified; no
two bookings holding one practitioner at once. Used by tests/test_crash.py (a few cycles in CI) and scripts/crash-harness
(100 and more). On PostgreSQL, when the throwaway server's crash-restart script is at hand (scripts/with-postgres sets
DERMIS_TEST_PG_CRASH_RESTART), every third cycle also kills PostgreSQL itself with SIGKILL under the load and starts it
again: what was acknowledged before must survive its recovery, and the running server must take writes again.

The load, from several threads at once: new patients and bookings, each with an id the client makes up (a create whose
answer the kill cut off is sent again with the same id once the server is back, as a careful client does, and must not
make a second record), edits to patients (If-Match with the version last acknowledged), and bookings of consultation
slots. A write counts as acknowledged only when its 2xx answer arrived; one cut off by the kill may or may not have
landed, and both are allowed — but an acknowledged one must be there exactly as answered, and no create is stored twice."""
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from conftest import RunningServer, run_dermis

DESK = "desk@demo.dermis.test"


def call(base, token, path, body=None, method=None, headers=None):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method or ("POST" if body is not None else "GET"),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


@dataclass
class Ledger:
    """What the server acknowledged: patient id -> (family name, version, given name last set); booking ids."""
    patients: dict = field(default_factory=dict)
    bookings: set = field(default_factory=set)
    wrong_answers: list = field(default_factory=list)
    found_again: int = 0  # creates sent again with their id whose first sending had landed (answered 200)
    pending: list = field(default_factory=list)  # creates cut off by a kill, to send again after the restart
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_again(base, token, ledger, path, request):
    """A create whose answer never came, sent again with its client-made id: stored once, answered with that id."""
    status, body = call(base, token, path, request)
    if status not in (200, 201):
        return
    with ledger.lock:
        if body["id"].lower() != request["id"]:
            ledger.wrong_answers.append(f"{path}: sent again with id {request['id']}, answered with {body['id']}")
            return
        ledger.found_again += status == 200
        if path.endswith("/patients"):
            ledger.patients.setdefault(body["id"], (request["familyName"], body["version"], "Load"))
        else:
            ledger.bookings.add(body["id"])


def load(base, token, ledger, stop, seed, location, days):
    rng = random.Random(seed)
    n = 0
    unanswered = None  # a create sent with its client-made id whose answer never came: sent again first
    while not stop.is_set():
        n += 1
        try:
            choice = rng.random()
            if unanswered is not None:
                path, request = unanswered
                send_again(base, token, ledger, path, request)
                unanswered = None
            elif choice < 0.45 or not ledger.patients:
                family = f"Crash{seed}x{n}"
                request = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "givenName": "Load", "familyName": family,
                           "dateOfBirth": "1980-02-02"}
                unanswered = ("/api/v1/patients", request)
                status, body = call(base, token, "/api/v1/patients", request)
                unanswered = None
                if status == 201:
                    with ledger.lock:
                        ledger.patients[body["id"]] = (family, body["version"], "Load")
            elif choice < 0.85:
                with ledger.lock:
                    pid, (family, version, _) = rng.choice(list(ledger.patients.items()))
                given = f"Edit{seed}x{n}"
                status, body = call(base, token, f"/api/v1/patients/{pid}",
                                    {"givenName": given, "familyName": family, "dateOfBirth": "1980-02-02"},
                                    method="PUT", headers={"If-Match": f'W/"{version}"'})
                if status == 200:
                    with ledger.lock:
                        if body["version"] > ledger.patients[pid][1]:
                            ledger.patients[pid] = (family, body["version"], given)
            else:
                day = rng.choice(days)
                status, body = call(base, token, f"/api/v1/availability?location={location}&service=consultation&from={day}&to={day}")
                slots = (body or {}).get("slots") or []
                if slots:
                    slot = rng.choice(slots)
                    request = {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "location": location,
                               "service": "consultation", "start": slot["start"]}
                    unanswered = ("/api/v1/appointments", request)
                    status, booked = call(base, token, "/api/v1/appointments", request)
                    unanswered = None
                    if status == 201:
                        with ledger.lock:
                            ledger.bookings.add(booked["id"])
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if stop.is_set():
                break
            time.sleep(0.01)  # the server is down between kill and restart
    if unanswered is not None:  # cut off by the kill: the next cycle sends it again once the server is back
        with ledger.lock:
            ledger.pending.append(unanswered)


def stored(data, env):
    """The rows as the database holds them, read in two queries (SQLite file or psql): {id: (family, version, given)},
    the set of booking ids found, and every patient's family name (to find one stored twice)."""
    import sqlite3
    import subprocess

    if env.get("DATABASE_URL"):
        def rows(sql):
            out = subprocess.run(["psql", env["DATABASE_URL"], "-tA", "-F", "\t", "-c", sql], check=True, capture_output=True, text=True).stdout
            return [line.split("\t") for line in out.splitlines() if line]
        patients = rows("SELECT id, family_name, version, given_name FROM patient")
        bookings = rows("SELECT id FROM appointment")
    else:
        db = sqlite3.connect(f"file:{data / 'dermis.sqlite'}?mode=ro", uri=True)
        try:
            patients = db.execute("SELECT id, family_name, version, given_name FROM patient").fetchall()
            bookings = db.execute("SELECT id FROM appointment").fetchall()
        finally:
            db.close()
    found = {str(r[0]).lower(): (r[1], int(r[2]), r[3]) for r in patients}
    return found, {str(r[0]).lower() for r in bookings}, [r[1] for r in patients]


def check(ledger, data, env, audit=True):
    """Every acknowledged write is there as answered; the audit chain verifies; (the caller checks double bookings)."""
    problems = []
    with ledger.lock:
        patients = dict(ledger.patients)
        bookings = set(ledger.bookings)
        problems += ledger.wrong_answers
    found, booked, families = stored(data, env)
    seen = set()
    for family in families:
        if family.startswith("Crash") and family in seen:
            problems.append(f"patient {family} stored twice: a create sent again with its id made a second record")
        seen.add(family)
    for pid, (family, version, given) in patients.items():
        row = found.get(pid.lower())
        if row is None:
            problems.append(f"patient {pid} ({family}) acknowledged, now 404")
        elif row[0] != family or row[1] < version or (row[1] == version and row[2] != given):
            problems.append(f"patient {pid}: acknowledged v{version} {given} {family}, found v{row[1]} {row[2]} {row[0]}")
    for bid in bookings:
        if bid.lower() not in booked:
            problems.append(f"booking {bid} acknowledged, now missing")
    if audit:
        code, out, err = run_dermis("verify-audit", "--data-dir", str(data), env=env)
        if code != 0:
            problems.append("verify-audit: " + (err or out).strip())
    return problems


def overlapping(base, token, location, days):
    """Bookings that hold one practitioner at overlapping times (the no-overlap guard must make this empty)."""
    status, body = call(base, token, f"/api/v1/appointments?location={location}&from={days[0]}&to={days[-1]}")
    appointments = [a for a in (body if isinstance(body, list) else (body or {}).get("appointments", [])) if a.get("status") == "booked"]
    clashes = []
    for i, a in enumerate(appointments):
        for b in appointments[i + 1:]:
            same = any(a.get(k) and a.get(k) == b.get(k) for k in ("practitioner", "room"))
            if same and a["start"] < b["end"] and b["start"] < a["end"]:
                clashes.append((a["id"], b["id"]))
    return clashes


def answers_every_connection(server, tries=20):
    """Whether /healthz answers 200 on each of `tries` new connections (they land on all of the server's event loops,
    each with its own database pool), every one within 5 s."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=5) as response:
                if response.status != 200:
                    return False
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False
    return True


def acknowledged(ledger):
    with ledger.lock:
        return len(ledger.patients) + len(ledger.bookings)


def run(data, cycles, seed=7, env=None, threads=4, log=print, crash_database=None):
    """Runs `cycles` kill-and-restart cycles on the data folder; returns (problems, acknowledged writes). With
    `crash_database` (a command that kills PostgreSQL and starts it again), every third cycle runs it under the load too."""
    import subprocess

    env = env or {}
    rng = random.Random(seed)
    assert run_dermis("demo", "--data-dir", str(data), env=env)[0] == 0
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(data), env=env)
    assert code == 0, err
    token = out.strip().split()[-1]
    ledger = Ledger()
    problems = []
    restarts = []  # cycles in which the server stopped itself (exit 75) after PostgreSQL restarted
    import datetime
    days = []
    day = datetime.date.today() + datetime.timedelta(days=3)
    while len(days) < 40:  # enough free slots that bookings keep landing through a 100-cycle run
        if day.weekday() < 5:
            days.append(day.isoformat())
        day += datetime.timedelta(days=1)
    location = None
    for cycle in range(cycles):
        server = RunningServer(data, env=env).wait_ready()
        try:
            if location is None:
                location = call(server.base, token, "/api/v1/locations")[1][0]["id"]
            if cycle > 0:
                # The audit chain is walked every tenth cycle and at the end (it grows; the rows are checked every time).
                found = check(ledger, data, env, audit=cycle % 10 == 0)
                problems += [f"cycle {cycle}: {p}" for p in found]
                with ledger.lock:
                    pending, ledger.pending = ledger.pending, []
                for path, request in pending:
                    send_again(server.base, token, ledger, path, request)
            stop = threading.Event()
            workers = [threading.Thread(target=load, args=(server.base, token, ledger, stop, seed * 100 + cycle * 10 + i, location, days))
                       for i in range(threads)]
            for w in workers:
                w.start()
            time.sleep(rng.uniform(0.3, 1.5))  # a random moment under load, not a timing assertion
            if crash_database and cycle % 3 == 1:
                subprocess.run([crash_database], check=True, capture_output=True, timeout=120)
                # The server must take writes again: by itself, or — when PostgresNIO has left its pool stuck — by exiting
                # with 75 for its supervisor, played here by starting it again on the same port (see PoolWatchdog).
                before, deadline = acknowledged(ledger), time.monotonic() + 120
                while acknowledged(ledger) < before + threads or not answers_every_connection(server):
                    if server.process.poll() is not None:
                        if server.process.returncode != 75:
                            problems.append(f"cycle {cycle}: the server exited with {server.process.returncode} after PostgreSQL restarted")
                            break
                        restarts.append(cycle)
                        server = RunningServer(data, env=env, port=server.port).wait_ready()
                    if time.monotonic() > deadline:
                        problems.append(f"cycle {cycle}: no write acknowledged in 120 s after PostgreSQL came back")
                        break
                    time.sleep(0.05)  # polling for the server to take writes again, not timing a test
                time.sleep(rng.uniform(0.1, 0.8))  # then a random moment more, before dermis itself is killed
            server.process.kill()
            server.process.wait(timeout=10)
            stop.set()
            for w in workers:
                w.join(timeout=15)
        finally:
            if server.process.poll() is None:
                server.process.kill()
        log(f"cycle {cycle + 1}/{cycles}: {len(ledger.patients)} patients, {len(ledger.bookings)} bookings acknowledged so far")
    server = RunningServer(data, env=env).wait_ready()
    try:
        problems += [f"final: {p}" for p in check(ledger, data, env)]
        problems += [f"double booking: {a} and {b}" for a, b in overlapping(server.base, token, location, days)]
    finally:
        server.stop()
    log(f"creates sent again with their client-made id after a kill: {ledger.found_again} had landed and were found, not made twice")
    if crash_database:
        log(f"PostgreSQL killed in {len(range(1, cycles, 3))} cycles; the server stopped itself for a fresh start in {len(restarts)}")
    return problems, len(ledger.patients) + len(ledger.bookings)
