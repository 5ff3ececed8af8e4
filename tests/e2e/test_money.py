"""Selling the course, in a real browser on each database: a cancelled time filled from the waitlist (the front desk
adds two patients, cancels a booking, the offers arrive by e-mail at a real SMTP server, the first to take the time
gets it and the other is told it has gone), and an online booking's deposit paid at a local Stripe-compatible provider
(tests/fakepay.py) — held, refunded when the patient attends, every step on the invoice trail — with the provider's
webhooks replayed, forged and stale. axe-core checks the new pages."""
import datetime
import os
import re
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import api_json as api, ROOT, RunningServer, axe_problems, book_online, free_port, run_dermis, sign_in, submit_and_wait
from fakepay import SECRET, WEBHOOK_SECRET, FakePay
from mailserver import MailServer
from test_booking import fresh_postgres_database

DESK = "desk@demo.dermis.test"
SHOTS = ROOT / ".test-output" / "screenshots"


@pytest.fixture(params=["sqlite", "postgresql"])
def clinic(request, tmp_path):
    env = {}
    if request.param == "postgresql":
        if not os.environ.get("DERMIS_TEST_DATABASE_URL"):
            pytest.skip("needs DERMIS_TEST_DATABASE_URL (scripts/test sets it)")
        env = {"DATABASE_URL": fresh_postgres_database()}
    with MailServer(tmp_path, free_port()) as mail, FakePay(free_port()) as pay:
        port = free_port()
        env |= {"DERMIS_SMTP_URL": mail.url(), "DERMIS_SMTP_CA_FILE": str(mail.cert),
                "DERMIS_MAIL_FROM": "Harbour Skin Clinic <clinic@harbour.example>", "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "DERMIS_PAYMENTS_URL": pay.base, "DERMIS_PAYMENTS_SECRET": SECRET, "DERMIS_PAYMENTS_WEBHOOK_SECRET": WEBHOOK_SECRET}
        pay.webhook_url = f"http://127.0.0.1:{port}/webhooks/payments"
        server = RunningServer(tmp_path / "data", env=env, extra=("--demo",), port=port).wait_ready()
        code, out, err = run_dermis("create-token", "--email", "ines.doctor@demo.dermis.test", "--data-dir", str(tmp_path / "data"), env=env)
        assert code == 0, err
        try:
            yield server, out.strip().split()[-1], mail, pay, request.param
        finally:
            server.stop()



def checked(browser, name):
    problems = axe_problems(browser)
    assert not problems, f"{name} ({browser.current_url}):\n" + "\n".join(problems)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def body_of(message):
    return message.get_body(preferencelist=("plain",)).get_content()


def test_a_cancelled_time_is_filled_from_the_waitlist(clinic, browser):
    server, token, mail, pay, database = clinic
    status, locations = api(server, token, "/api/v1/locations")
    assert status == 200, locations
    location = locations[0]["id"] if isinstance(locations, list) else locations["locations"][0]["id"]
    today = datetime.date.today()
    # Two patients who want an earlier consultation, and one who has a consultation booked.
    waiting = []
    for given, family in (("Noor", "Haddad"), ("Sami", "Laine")):
        status, patient = api(server, token, "/api/v1/patients", {"givenName": given, "familyName": family, "dateOfBirth": "1988-03-02",
                                                                    "email": f"{given.lower()}@example.test"})
        assert status == 201, patient
        waiting.append(patient)
    status, holder = api(server, token, "/api/v1/patients", {"givenName": "Ada", "familyName": "Quist", "dateOfBirth": "1979-07-21",
                                                               "email": "ada@example.test"})
    assert status == 201, holder
    start_day = today + datetime.timedelta(days=3)
    status, free = api(server, token, f"/api/v1/availability?location={location}&service=consultation&from={start_day}&to={start_day + datetime.timedelta(days=7)}")
    assert status == 200 and free["slots"], free
    start = free["slots"][0]["start"]
    status, booked = api(server, token, "/api/v1/appointments", {"location": location, "service": "consultation", "patient": holder["id"], "start": start})
    assert status == 201, booked
    mail.inbox.wait_for(1)  # Ada's confirmation

    # The front desk adds Noor, then Sami, to the waitlist in the browser.
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    for patient in waiting:
        browser.get(server.base + f"/waitlist?patient={patient['id']}")
        Select(browser.find_element(By.ID, "service")).select_by_value("consultation")
        browser.find_element(By.ID, "earliest").send_keys(today.strftime("%m%d%Y"))
        browser.find_element(By.ID, "latest").send_keys((today + datetime.timedelta(days=30)).strftime("%m%d%Y"))
        submit_and_wait(browser, "add-to-waitlist")
        assert browser.find_element(By.ID, "added").is_displayed(), browser.page_source[:2000]
    rows = browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text.split(" (")[0] for r in rows] == ["Noor Haddad", "Sami Laine"]
    checked(browser, f"waitlist-{database}")

    # Ada's booking is cancelled at the desk: the time goes to Noor and Sami, in that order.
    browser.get(server.base + f"/appointments/{booked['id']}")
    submit_and_wait(browser, "action-cancelled")
    messages = mail.inbox.wait_for(4)  # Ada's confirmation, her cancellation, two offers
    offers = {recipients[0]: body_of(message) for _, recipients, message in messages if "An earlier time" in message["Subject"]}
    assert set(offers) == {"noor@example.test", "sami@example.test"}, [m["Subject"] for _, _, m in messages]
    links = {who: re.search(r"http://127\.0\.0\.1:\d+/waitlist/offer/[A-Za-z0-9_-]+", text).group(0) for who, text in offers.items()}
    browser.get(server.base + "/waitlist")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#offers tbody tr")) == 2

    # Sami answers first, on a phone: the time is his.
    browser.delete_all_cookies()
    browser.set_window_size(390, 844)
    try:
        browser.get(links["sami@example.test"])
        checked(browser, f"waitlist-offer-{database}")
        submit_and_wait(browser, "take-offer")
        assert browser.find_element(By.ID, "offer-booked").is_displayed()
        # Noor, a moment later, is told it has gone, and stays on the waitlist.
        browser.get(links["noor@example.test"])
        assert browser.find_element(By.ID, "offer-gone").is_displayed()
        assert not browser.find_elements(By.ID, "take-offer")
    finally:
        browser.set_window_size(1280, 1600)
    later = mail.inbox.wait_for(6)
    subjects = {(r[0], m["Subject"]) for _, r, m in later}
    assert any(who == "noor@example.test" and "has been taken" in subject for who, subject in subjects), subjects
    assert any(who == "sami@example.test" and "confirmed" in subject for who, subject in subjects), subjects
    status, slots = api(server, token, f"/api/v1/appointments?location={location}&from={start[:10]}&to={start[:10]}")
    assert status == 200, slots
    listed = slots if isinstance(slots, list) else slots.get("appointments", [])
    taken = [a for a in listed if a["start"] == start and a["status"] == "booked"]
    assert len(taken) == 1 and taken[0]["patient"] == waiting[1]["id"] and taken[0]["source"] == "waitlist", taken

    # The desk sees who took it; Noor is still waiting.
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    browser.get(server.base + "/waitlist")
    answered = browser.find_element(By.ID, "answered").text
    assert "taken" in answered and "gone" in answered
    assert [r.find_element(By.TAG_NAME, "a").text.split(" (")[0] for r in browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")] == ["Noor Haddad"]


def test_a_deposit_is_paid_at_the_provider_held_and_refunded_when_the_patient_comes(clinic, browser):
    server, token, mail, pay, database = clinic
    start = book_online(browser, server, "Priya Shah", "priya@example.test")
    _, _, message = mail.inbox.wait_for(1)[0]
    link = re.search(r"http://127\.0\.0\.1:\d+/book/confirm/[A-Za-z0-9_-]+", body_of(message)).group(0)

    # The policy is shown before paying; paying happens on the provider's page.
    browser.get(link)
    assert "A deposit of GBP 50.00 holds this time" in browser.find_element(By.ID, "deposit-policy").text
    assert not browser.find_elements(By.ID, "confirm-booking")
    checked(browser, f"deposit-policy-{database}")
    submit_and_wait(browser, "pay-deposit")
    checked(browser, f"deposit-pay-{database}")
    browser.find_element(By.ID, "continue-to-payment").click()
    assert browser.find_element(By.ID, "card") and browser.current_url.startswith(pay.base + "/pay/")
    browser.find_element(By.ID, "card").send_keys("4242 4242 4242 4242")
    submit_and_wait(browser, "pay")
    assert browser.current_url.startswith(link)
    assert browser.find_element(By.ID, "confirmed").is_displayed()
    assert "GBP 50.00 deposit is paid" in browser.find_element(By.ID, "deposit-held").text
    completed = [e for e in pay.events if e["type"] == "checkout.session.completed"]
    assert len(completed) == 1

    # The provider's webhook again (a replay), forged, and stale: nothing changes.
    assert pay.deliver(completed[0]) == (200, {"received": True, "acted": False})
    assert pay.deliver(completed[0] | {"id": "evt_forged"}, secret="whsec_guessed_secret")[0] == 400
    assert pay.deliver(completed[0] | {"id": "evt_stale"}, at=time.time() - 600)[0] == 400
    assert pay.deliver(completed[0] | {"id": "evt_unsigned"}, signature="")[0] == 400

    # The patient comes: checked in at the desk, the deposit goes back through the provider, once.
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    browser.get(server.base + "/invoices")
    assert "held" in browser.find_element(By.ID, "deposits").text
    checked(browser, f"invoices-{database}")
    browser.find_element(By.CSS_SELECTOR, "#deposits a").click()
    assert "INV-000001" in browser.find_element(By.ID, "invoice-number").text
    assert "card-online" in browser.find_element(By.ID, "money").text
    checked(browser, f"invoice-{database}")
    browser.get(server.base + "/calendar?date=" + start[:10])
    browser.find_element(By.PARTIAL_LINK_TEXT, "Priya Shah").click()
    submit_and_wait(browser, "action-checked-in")
    deadline = time.monotonic() + 30
    while not pay.refunds and time.monotonic() < deadline:
        time.sleep(0.2)  # the deposit worker runs every two seconds
    assert [r["amount"] for r in pay.refunds.values()] == [5000]
    browser.get(server.base + "/invoices")
    listing = browser.find_element(By.ID, "invoice-list").text
    assert "INV-000001" in listing and "CN-000002" in listing
    browser.find_element(By.LINK_TEXT, "CN-000002").click()
    assert "Refunded: attended" in browser.find_element(By.ID, "credits").text
    assert "card-online" in browser.find_element(By.ID, "money").text

