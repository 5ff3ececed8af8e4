"""The demo clinic as a newcomer meets it, in a real browser: the today board, a patient mid-series with outcome charts
and photos, the reports with their charts. The screenshots it takes are the README's (copied to docs/screenshots)."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from conftest import ROOT, RunningServer, run_dermis, sign_in

SHOTS = ROOT / ".test-output" / "screenshots"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    server = RunningServer(tmp_path_factory.mktemp("demo") / "data", extra=("--demo", "--history")).wait_ready()
    yield server
    server.stop()


def shoot(browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_a_newcomer_walks_the_demo(demo, browser):
    logins = demo.demo_logins()
    sign_in(browser, demo, "ines.doctor@demo.dermis.test", logins["ines.doctor@demo.dermis.test"])

    # Signing in lands on the today board: appointments with readiness, someone blocked with the link that fixes it.
    assert browser.current_url.endswith("/today")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.today-appointments tbody tr")
    assert len(rows) >= 3
    assert browser.find_elements(By.CSS_SELECTOR, "tr.ready"), "one of today's patients is ready"
    blocked = browser.find_elements(By.CSS_SELECTOR, "li.blocked a")
    assert blocked, "a blocked patient shows the link that fixes it"
    assert browser.find_elements(By.CSS_SELECTOR, "#today-open-events li"), "an adverse event nobody has acted on"
    assert browser.find_elements(By.CSS_SELECTOR, "#today-lots li"), "the lot expiring this month"
    assert browser.find_elements(By.CSS_SELECTOR, "#today-overdue li"), "patients who stopped checking in"
    assert "Numbing from" in browser.find_element(By.CSS_SELECTOR, "table.today-appointments").text
    shoot(browser, "today")

    # A patient mid-series: the course shows the outcome charts across their sessions, and their photos load.
    patient = browser.find_element(By.CSS_SELECTOR, "tr.ready td:nth-child(2) a")
    name = patient.text
    patient.click()
    assert name in browser.find_element(By.TAG_NAME, "h1").text
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.outcome-chart")
    assert charts, "outcome scores plot"
    assert browser.find_elements(By.CSS_SELECTOR, "svg.outcome-chart .point"), "with a point per score"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#follow-ups li")) >= 2, "two sessions or more signed"
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "bookings"))
    shoot(browser, "course")
    browser.find_element(By.LINK_TEXT, "Photos").click()
    images = browser.find_elements(By.CSS_SELECTOR, "figure img")
    assert len(images) >= 2
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView()", image)
    browser.implicitly_wait(0)
    loaded = browser.execute_script("return Array.from(document.querySelectorAll('figure img')).map(i => i.complete && i.naturalWidth)")
    browser.implicitly_wait(5)
    assert all(width == 240 for width in loaded), loaded

    # The reports: outcomes with their interval chart, safety with bars by depth band, operations.
    browser.find_element(By.ID, "reports-link").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#outcomes-table tbody tr"), "completed series in the demo"
    assert browser.find_elements(By.CSS_SELECTOR, "svg.interval-chart .median")
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-safety-band g.bar")
    assert len(bars) == 3, "one bar per depth band of the protocol"
    assert "per 100" in bars[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "#utilisation tbody tr[data-kind=practitioner]")
    assert "series started" in browser.find_element(By.ID, "series").text
    shoot(browser, "reports")

    # A filter the page cannot read is named, and the default report still shows.
    browser.get(demo.base + "/reports?from=30-11-2026")
    assert "from: must be a date YYYY-MM-DD" in browser.find_element(By.ID, "errors").text
    assert browser.find_elements(By.ID, "outcomes-table")


def test_the_same_figures_as_json_and_csv_and_front_desk_is_refused(demo):
    code, out, err = run_dermis("create-token", "--data-dir", str(demo_data(demo)), "--email", "ines.doctor@demo.dermis.test", "--name", "t")
    assert code == 0, err
    token = out.strip().splitlines()[-1]

    def get(path, bearer=token):
        request = urllib.request.Request(demo.base + path, headers={"Authorization": f"Bearer {bearer}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read().decode()

    status, _, body = get("/api/v1/reports/safety")
    assert status == 200
    safety = json.loads(body)
    band = next(t for t in safety["tables"] if t["dimension"] == "band")
    assert sum(row["sessions"] for row in band["rows"]) == safety["sessions"] > 40
    assert safety["open"] >= 1 and safety["openEvents"][0]["daysOpen"] >= 0
    status, kind, body = get("/api/v1/reports/safety.csv")
    assert status == 200 and kind.startswith("text/csv")
    lines = body.strip().splitlines()
    assert lines[0] == "dimension,key,label,sessions,events,open,per_100_sessions,small_group"
    assert len(lines) - 1 == sum(len(t["rows"]) for t in safety["tables"])

    status, _, body = get("/api/v1/reports/operations?from=2026-13-01")
    assert status == 422 and json.loads(body)["error"]["field"] == "from"
    status, _, body = get("/api/v1/reports/outcomes?location=" + "00000000-0000-0000-0000-000000000000")
    assert status == 422 and json.loads(body)["error"]["field"] == "location"

    code, out, err = run_dermis("create-token", "--data-dir", str(demo_data(demo)), "--email", "desk@demo.dermis.test", "--name", "t")
    desk = out.strip().splitlines()[-1]
    for path in ("/api/v1/reports/outcomes", "/api/v1/reports/safety.csv"):
        assert get(path, bearer=desk)[0] == 403


def demo_data(server) -> Path:
    args = server.process.args
    return Path(args[args.index("--data-dir") + 1])


def test_the_staff_pages_have_no_serious_accessibility_problems(demo, browser):
    """axe-core on the staff pages of the demo clinic, as the practitioner and as the front desk: every page a day's work
    opens (the today board, calendar, patients, a patient mid-series with their course, intake, photos, follow-up and
    messages, the plan page, adverse events, reports, the account) — no serious or critical violation."""
    from conftest import axe_problems

    logins = demo.demo_logins()
    problems = {}
    for person in ("ines.doctor@demo.dermis.test", "desk@demo.dermis.test"):
        sign_in(browser, demo, person, logins[person])
        browser.get(demo.base + "/today")
        course = browser.find_element(By.CSS_SELECTOR, "tr.ready td:nth-child(2) a").get_attribute("href")
        patient = course.removesuffix("/course")
        assert patient != course, course
        pages = ["/today", "/calendar", "/patients", "/patients/new", "/plan", "/account", patient, patient + "/course",
                 patient + "/intake/new", patient + "/messages", patient + "/edit"]
        if person.startswith("ines"):
            pages += ["/adverse-events", "/reports", patient + "/photos", patient + "/photos/compare?zone=cheeks&view=front"]
            browser.get(patient + "/course")
            pages += [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#follow-ups a")[:1]]
            pages += [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "[data-step='Screening'] a, [data-step='Consent'] a")]
        for page in pages:
            browser.get(page if page.startswith("http") else demo.base + page)
            assert browser.find_elements(By.CSS_SELECTOR, "main h1"), f"{page} did not open as a page"
            found = axe_problems(browser)
            if found:
                problems[f"{person} {browser.current_url}"] = found
    assert not problems, "\n".join(f"{page}:\n  " + "\n  ".join(found) for page, found in problems.items())
