"""Text messages end to end: front desk records a patient's consent and chooses SMS in the browser; a booking's
confirmation reaches a local Twilio-style provider as a form POST with basic auth; the patient's STOP, signed as the
provider signs it (HMAC-SHA1 computed here by Python's own hmac), ends texts and a forged one changes nothing; the
provider's refusal is dead with its answer and its trouble is retried."""
import base64
import hashlib
import hmac
import json
import sqlite3
import time
import urllib.parse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import RunningServer, free_port, post_form, run_dermis, sign_in, submit_and_wait
from smssink import SMSSink
from test_booking import api, next_weekday

DESK = "desk@demo.dermis.test"
TOKEN = "test-auth-token"


@pytest.fixture
def sink():
    with SMSSink(free_port()) as server:
        yield server


@pytest.fixture
def sms_server(tmp_path, sink):
    port = free_port()
    env = {"DERMIS_SMS_URL": sink.url, "DERMIS_SMS_FROM": "+15005550006", "DERMIS_SMS_USER": "AC0001",
           "DERMIS_SMS_PASSWORD": TOKEN, "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    server = RunningServer(tmp_path / "data", env=env, extra=("--demo",), port=port).wait_ready()
    code, out, err = run_dermis("create-token", "--email", DESK, "--data-dir", str(tmp_path / "data"))
    assert code == 0, err
    yield server, out.strip().split()[-1]
    server.stop()


def patient_id(server, token, family):
    status, body = api(server, token, "/api/v1/patients?q=" + urllib.parse.quote(family))
    assert status == 200, body
    return json.loads(body)["patients"][0]["id"]


def choose_sms(browser, server, patient):
    browser.get(f"{server.base}/patients/{patient}/messages")
    Select(browser.find_element(By.ID, "channel")).select_by_value("sms")
    browser.find_element(By.ID, "smsConsent").click()
    Select(browser.find_element(By.ID, "consentHow")).select_by_value("in person")
    submit_and_wait(browser, "save-messaging")
    assert browser.find_element(By.ID, "saved")
    assert "in person" in browser.find_element(By.ID, "sms-consent").text


def book(server, token, patient, days_ahead):
    location = json.loads(api(server, token, "/api/v1/locations")[1])[0]["id"]
    day = next_weekday(days_ahead)
    slot = json.loads(api(server, token, f"/api/v1/availability?location={location}&service=consultation&from={day}&to={day}")[1])["slots"][1]
    status, body = api(server, token, "/api/v1/appointments",
                       {"location": location, "service": "consultation", "start": slot["start"], "patient": patient})
    assert status == 201, body
    return json.loads(body)["id"]


def signed_webhook(server, fields, token=TOKEN):
    url = server.base + "/webhooks/sms"
    text = url + "".join(key + fields[key] for key in sorted(fields))
    signature = base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()
    return post_form(url, fields, "https://api.twilio.com", headers={"X-Twilio-Signature": signature})


def message_state(data_dir, about):
    db = sqlite3.connect(data_dir / "dermis.sqlite")
    try:
        return db.execute("SELECT status, last_error, channel FROM message WHERE subject_id = ? ORDER BY created_at DESC",
                          (about.upper(),)).fetchall() or db.execute(
            "SELECT status, last_error, channel FROM message WHERE lower(subject_id) = ?", (about.lower(),)).fetchall()
    finally:
        db.close()


def wait_for_state(data_dir, about, statuses, seconds=30):
    deadline = time.monotonic() + seconds
    rows = []
    while time.monotonic() < deadline:
        rows = message_state(data_dir, about)
        if rows and rows[0][0] in statuses:
            return rows[0]
        time.sleep(0.2)  # polling for the worker, not timing a test
    raise AssertionError(f"no message about {about} reached {statuses}: {rows}")


def test_a_patient_who_chose_texts_gets_them_and_STOP_ends_them(sms_server, sink, browser, tmp_path):
    server, token = sms_server
    zoe = patient_id(server, token, "Lefèvre")
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    choose_sms(browser, server, zoe)

    book(server, token, zoe, 5)
    received = sink.wait_for(1)[0]
    assert received["path"] == "/2010-04-01/Accounts/AC0001/Messages.json"
    assert received["auth"] == f"AC0001:{TOKEN}"
    assert received["content_type"].startswith("application/x-www-form-urlencoded")
    assert received["form"]["To"] == "+447700900101" and received["form"]["From"] == "+15005550006"
    assert "booked for" in received["form"]["Body"] and "Fitzpatrick" not in received["form"]["Body"]

    # A STOP nobody signed, or signed with another key, changes nothing.
    stop = {"From": "+447700900101", "To": "+15005550006", "Body": "STOP", "MessageSid": "SM1"}
    assert post_form(server.base + "/webhooks/sms", stop, "https://api.twilio.com")[0] == 403
    assert signed_webhook(server, stop, token="guess")[0] == 403
    browser.get(f"{server.base}/patients/{zoe}/messages")
    assert not browser.find_elements(By.ID, "sms-stopped")
    status, body, headers = signed_webhook(server, stop)
    assert status == 200 and "<Response/>" in body and headers["Content-Type"].startswith("application/xml")
    browser.get(f"{server.base}/patients/{zoe}/messages")
    assert "replied STOP" in browser.find_element(By.ID, "sms-stopped").text
    # Her START, then the earlier STOP replayed: the provider's message id was seen, so nothing changes.
    assert signed_webhook(server, {**stop, "Body": "START", "MessageSid": "SM2"})[0] == 200
    assert signed_webhook(server, stop)[0] == 200
    browser.get(f"{server.base}/patients/{zoe}/messages")
    assert not browser.find_elements(By.ID, "sms-stopped")
    assert signed_webhook(server, {**stop, "MessageSid": "SM3"})[0] == 200

    # No text after STOP (and she has no e-mail address): the next booking writes nothing to send.
    book(server, token, zoe, 6)
    assert len(sink.received) == 1


def test_the_providers_refusal_is_dead_with_its_answer_and_its_trouble_retried(sms_server, sink, browser, tmp_path):
    server, token = sms_server
    jose = patient_id(server, token, "Álvarez")
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    choose_sms(browser, server, jose)
    sink.answer((400, {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
                (503, {"message": "Service unavailable"}))
    first = book(server, token, jose, 5)
    state, error, channel = wait_for_state(tmp_path / "data", first, ("dead", "retry", "sent"))
    assert (state, channel) == ("dead", "sms") and "21211" in error and "not a valid phone number" in error
    second = book(server, token, jose, 6)
    state, error, _ = wait_for_state(tmp_path / "data", second, ("dead", "retry", "sent"))
    assert state == "retry" and "503" in error
