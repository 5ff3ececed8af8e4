"""The patient's own pages, played by a new patient on a phone, on each database: a sign-in link that arrives by
e-mail at a real SMTP server, the health questions, the consent signed with a finger, the next session booked on a
time the series interval allows, and a check-in after the first session. axe-core checks every page the patient
visits (and the staff pages the practitioner then reads) for serious or critical accessibility problems. The staff
side shows the patient's own answers and signature. Screenshots at phone and tablet sizes go to .test-output."""
import os
import re
import sqlite3
import subprocess

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from conftest import api_json as api, ROOT, RunningServer, axe_problems, free_port, post_form, run_dermis, sign_in, submit_and_wait
from mailserver import MailServer
from test_booking import fresh_postgres_database

DOCTOR = "ines.doctor@demo.dermis.test"
SHOTS = ROOT / ".test-output" / "screenshots"
PHONE = (390, 844)
TABLET = (820, 1180)


@pytest.fixture(params=["sqlite", "postgresql"])
def clinic(request, tmp_path):
    env = {}
    if request.param == "postgresql":
        if not os.environ.get("DERMIS_TEST_DATABASE_URL"):
            pytest.skip("needs DERMIS_TEST_DATABASE_URL (scripts/test sets it)")
        env = {"DATABASE_URL": fresh_postgres_database()}
    with MailServer(tmp_path, free_port()) as mail:
        port = free_port()
        env |= {"DERMIS_SMTP_URL": mail.url(), "DERMIS_SMTP_CA_FILE": str(mail.cert),
                "DERMIS_MAIL_FROM": "Harbour Skin Clinic <clinic@harbour.example>", "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        server = RunningServer(tmp_path / "data", env=env, extra=("--demo",), port=port).wait_ready()
        code, out, err = run_dermis("create-token", "--email", DOCTOR, "--data-dir", str(tmp_path / "data"), env=env)
        assert code == 0, err
        try:
            yield server, out.strip().split()[-1], mail, env.get("DATABASE_URL"), tmp_path / "data", request.param
        finally:
            server.stop()



def first_id(database_url, data_dir, table, where=""):
    """Test set-up reads the pen and lot ids straight from the database: the API has no list of them."""
    sql = f"SELECT id FROM {table} {where} LIMIT 1"
    if database_url:
        return subprocess.run(["psql", database_url, "-tAc", sql], check=True, capture_output=True, text=True).stdout.strip()
    with sqlite3.connect(data_dir / "dermis.sqlite") as db:
        return str(db.execute(sql).fetchone()[0])


def checked(browser, name, seen):
    """axe on the page now open (no serious or critical problem), then a screenshot under `name`."""
    problems = axe_problems(browser)
    assert not problems, f"{name} ({browser.current_url}):\n" + "\n".join(problems)
    seen.append(name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def staff_cookie(server, email, password):
    """A staff session cookie from the real sign-in form (the practitioner's second device, beside the patient's phone)."""
    status, _, headers = post_form(server.base + "/login", {"email": email, "password": password}, server.base)
    assert status == 303
    return headers["Set-Cookie"].split(";")[0]


def sign_the_pad(browser):
    pad = browser.find_element(By.ID, "signature-pad")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
    ActionChains(browser).move_to_element_with_offset(pad, -100, 0).click_and_hold() \
        .move_by_offset(60, 20).move_by_offset(60, -30).move_by_offset(50, 25).release().perform()


def test_a_new_patient_signs_in_answers_signs_books_and_checks_in_on_a_phone(clinic, browser):
    server, token, mail, database_url, data_dir, database = clinic
    seen = []
    # The clinic registers a new patient with an e-mail address.
    status, patient = api(server, token, "/api/v1/patients", {"givenName": "Mina", "familyName": "Rahimi", "dateOfBirth": "1990-05-17",
                                                                "email": "mina.rahimi@example.test"})
    assert status == 201, patient
    patient_id = patient["id"]
    browser.set_window_size(*PHONE)
    try:
        browser.delete_all_cookies()
        # 1. She asks for a sign-in link; the page says the same as for any address.
        browser.get(server.base + "/my/sign-in")
        checked(browser, f"my-sign-in-{database}", seen)
        browser.find_element(By.ID, "address").send_keys("Mina.Rahimi@example.test")
        submit_and_wait(browser, "send-link")
        assert browser.find_element(By.ID, "sent").is_displayed()
        checked(browser, f"my-sign-in-sent-{database}", seen)
        _, recipients, message = mail.inbox.wait_for(1)[0]
        assert recipients == ["mina.rahimi@example.test"] and "sign-in link" in message["Subject"]
        link = re.search(r"http://127\.0\.0\.1:\d+/my/link/[A-Za-z0-9_-]+", message.get_body(preferencelist=("plain",)).get_content()).group(0)

        # 2. The link asks her to press a button (a mail scanner would not sign her in), then lands on her pages.
        browser.get(link)
        checked(browser, f"my-link-{database}", seen)
        submit_and_wait(browser, "use-link")
        assert browser.current_url.endswith("/my") and "Hello Mina" in browser.find_element(By.TAG_NAME, "h1").text
        checked(browser, f"my-home-{database}", seen)
        browser.find_element(By.ID, "step-expect").click()
        assert browser.find_elements(By.CSS_SELECTOR, "#expect-steps li")
        checked(browser, f"my-expect-{database}", seen)

        # 3. The health questions at home: first sent with a skin type missing (named), then whole.
        browser.get(server.base + "/my")
        browser.find_element(By.ID, "step-intake").click()
        checked(browser, f"my-intake-{database}", seen)
        for answer in ("pregnant-no", "nursing-no", "treat-cheeks", "treat-forehead"):
            browser.find_element(By.ID, answer).click()
        submit_and_wait(browser, "save-intake")
        assert browser.find_element(By.CSS_SELECTOR, "#errors li[data-field='fitzpatrickType']")
        checked(browser, f"my-intake-error-{database}", seen)
        browser.find_element(By.ID, "fitzpatrick-3").click()
        submit_and_wait(browser, "save-intake")
        assert "will review" in browser.find_element(By.ID, "intake-outcome").text
        checked(browser, f"my-intake-done-{database}", seen)

        # The practitioner plans cheeks and forehead.
        request = {"zones": [{"zone": "cheeks", "indication": "acne-scars"}, {"zone": "forehead", "indication": "fine-lines"}],
                   "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5}
        status, plan = api(server, token, f"/api/v1/patients/{patient_id}/plans", {"request": request, "adjustments": []})
        assert status == 201, plan

        # 4. She reads the consent for that plan and signs it with her finger.
        browser.get(server.base + "/my")
        browser.find_element(By.ID, "step-consent").click()
        assert browser.find_elements(By.CSS_SELECTOR, "#plan-zones li")
        checked(browser, f"my-consent-{database}", seen)
        browser.find_element(By.ID, "typedName").send_keys("Mina Rahimi")
        sign_the_pad(browser)
        submit_and_wait(browser, "sign-consent")
        assert browser.find_element(By.ID, "notice").is_displayed()
        assert browser.find_element(By.CSS_SELECTOR, "li[data-step='consent'].done")

        # Her answers from home clear no session until the practitioner has gone through them with her.
        status, refused = api(server, token, f"/api/v1/patients/{patient_id}/sessions", {})
        assert status in (409, 422) and "reviews the answers" in str(refused), refused
        status, latest = api(server, token, f"/api/v1/patients/{patient_id}/screenings/latest")
        assert status == 200, latest
        practitioner = staff_cookie(server, DOCTOR, server.demo_logins()[DOCTOR])
        status, _, _ = post_form(server.base + f"/patients/{patient_id}/screenings/{latest['screeningID']}/review", {}, server.base,
                                 headers={"Cookie": practitioner})
        assert status == 303

        # The first session, charted and signed: the aftercare link reaches her too.
        status, chart = api(server, token, f"/api/v1/patients/{patient_id}/sessions", {})
        assert status == 201, chart
        pen = first_id(database_url, data_dir, "device")
        lot = first_id(database_url, data_dir, "cartridge_lot", "WHERE lot_number = 'DEMO-LOT-A'")
        body = {"identityConfirmed": True, "skinCleansed": True, "deviceID": pen, "lotID": lot,
                "numbingOverrideReason": "Numbing cream applied at home an hour before (test)",
                "zones": [{"zone": "cheeks", "depthMm": 1.0, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20},
                          {"zone": "forehead", "depthMm": 0.25, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12}],
                "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": False, "notes": ""}
        path = f"/api/v1/patients/{patient_id}/sessions/{chart['chartID']}"
        status, saved = api(server, token, path, body, method="PUT", version=chart["version"])
        assert status == 200, saved
        status, signed = api(server, token, path + "/sign", {}, version=saved["version"])
        assert status == 200, signed

        # 5. She books her next session: only days the interval allows are offered.
        browser.get(server.base + "/my")
        browser.find_element(By.ID, "book-next").click()
        note = browser.find_element(By.ID, "interval-note").text
        checked(browser, f"my-book-{database}", seen)
        first = browser.find_element(By.CSS_SELECTOR, "#slot-form input[name='start']")
        first.click()
        submit_and_wait(browser, "book-slot")
        assert "booked" in browser.find_element(By.ID, "notice").text
        assert browser.find_elements(By.CSS_SELECTOR, "#appointments li")
        assert "the first day you can book" in note
        checked(browser, f"my-home-booked-{database}", seen)

        # 6. A check-in after the session, from her pages.
        browser.find_element(By.CSS_SELECTOR, "#aftercare a").click()
        checked(browser, f"my-care-{database}", seen)
        browser.find_element(By.CSS_SELECTOR, "input[name='redness'][value='1']").click()
        browser.find_element(By.CSS_SELECTOR, "input[name='pain'][value='2']").click()
        submit_and_wait(browser, "send-check-in")
        assert browser.find_element(By.ID, "check-in-thanks").is_displayed()
        checked(browser, f"my-care-sent-{database}", seen)
        for page in ("progress", "account"):
            browser.get(server.base + f"/my/{page}")
            checked(browser, f"my-{page}-{database}", seen)

        # The same pages at a tablet's size.
        browser.set_window_size(*TABLET)
        for page in ("", "/expect"):
            browser.get(server.base + "/my" + page)
            checked(browser, f"my{page.replace('/', '-')}-tablet-{database}", seen)
    finally:
        browser.set_window_size(1280, 1600)

    # The practitioner sees which answers and which signature are the patient's own.
    sign_in(browser, server, DOCTOR, server.demo_logins()[DOCTOR])
    checked(browser, f"staff-today-{database}", seen)
    browser.get(server.base + f"/patients/{patient_id}")
    checked(browser, f"staff-patient-{database}", seen)
    browser.get(server.base + f"/patients/{patient_id}/course")
    assert "answered by the patient at home" in browser.find_element(By.CSS_SELECTOR, "[data-step='Intake']").text
    assert "at home" in browser.find_element(By.CSS_SELECTOR, "[data-step='Consent']").text
    checked(browser, f"staff-course-{database}", seen)
    browser.find_element(By.CSS_SELECTOR, "[data-step='Consent'] a").click()
    assert "Signed by the patient at home" in browser.find_element(By.ID, "signed-where").text
    assert browser.find_element(By.ID, "signature-verified").is_displayed()
    checked(browser, f"staff-consent-{database}", seen)
    browser.get(server.base + f"/patients/{patient_id}/course")
    browser.find_element(By.CSS_SELECTOR, "[data-step='Screening'] a").click()
    assert "Reviewed: by" in browser.find_element(By.ID, "from-patient").text
    checked(browser, f"staff-screening-{database}", seen)
    assert len(seen) >= 20
