"""E-mail that reaches patients, end to end: a patient books online, the confirmation arrives at a real SMTP server
(STARTTLS and AUTH required, its certificate checked against a private CA), its link confirms the booking, and the
front desk sees it booked."""
import re

import pytest
from selenium.webdriver.common.by import By

from conftest import RunningServer, book_online, free_port, sign_in, submit_and_wait
from mailserver import MailServer

DESK = "desk@demo.dermis.test"


@pytest.fixture
def mail(tmp_path):
    with MailServer(tmp_path, free_port()) as server:
        yield server


def serve_with_mail(tmp_path, mail, password=None):
    port = free_port()
    env = {"DERMIS_SMTP_URL": mail.url(password) if password else mail.url(), "DERMIS_SMTP_CA_FILE": str(mail.cert),
           "DERMIS_MAIL_FROM": "Harbour Skin Clinic <clinic@harbour.example>", "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    server = RunningServer(tmp_path / "data", env=env, extra=("--demo",), port=port)
    return server


def test_a_booking_confirmation_arrives_and_its_link_confirms_the_booking(tmp_path, mail, browser):
    server = serve_with_mail(tmp_path, mail).wait_ready()
    try:
        start = book_online(browser, server, "Noor Haddad", "noor@example.test")

        sender, recipients, message = mail.inbox.wait_for(1)[0]
        assert sender == "clinic@harbour.example" and recipients == ["noor@example.test"]
        assert message["Subject"].startswith("Confirm your booking at Harbour Skin Clinic")
        assert re.fullmatch(r"<[0-9a-f-]{36}@dermis>", message["Message-ID"])
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/book/confirm/[A-Za-z0-9_-]+", text).group(0)
        assert f'<a href="{link}">' in html

        browser.get(link)
        submit_and_wait(browser, "confirm-booking")
        assert browser.find_element(By.ID, "confirmed")

        sign_in(browser, server, DESK, server.demo_logins()[DESK])
        browser.get(server.base + "/calendar?date=" + start[:10])
        booking = browser.find_element(By.XPATH, "//td[contains(@class, 'booking')][.//a[contains(., 'Noor Haddad')]]")
        assert "booked" in booking.text
    finally:
        server.stop()


def wait_for_status(data_dir, kind, statuses, seconds=30):
    """The (status, last_error, attempts) of the newest message of `kind`, once it is in one of `statuses`."""
    import sqlite3
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db = sqlite3.connect(data_dir / "dermis.sqlite")
        try:
            row = db.execute("SELECT status, last_error, attempts FROM message WHERE kind = ? ORDER BY created_at DESC LIMIT 1",
                             (kind,)).fetchone()
        finally:
            db.close()  # a connection left open keeps its read snapshot
        if row and row[0] in statuses:
            return row
        time.sleep(0.2)  # polling for the worker, not timing a test
    raise AssertionError(f"no {kind} message reached {statuses}: {row}")


@pytest.mark.parametrize("problem", ["wrong-password", "unreachable"])
def test_a_refused_login_or_an_unreachable_server_is_recorded_and_retried_not_lost(tmp_path, mail, problem):
    from conftest import post_form

    port = free_port()
    url = mail.url("not-the-password") if problem == "wrong-password" else f"smtp://dermis:x@127.0.0.1:{free_port()}"
    env = {"DERMIS_SMTP_URL": url, "DERMIS_SMTP_CA_FILE": str(mail.cert), "DERMIS_MAIL_FROM": "clinic@harbour.example",
           "DERMIS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    server = RunningServer(tmp_path / "data", env=env, extra=("--demo",), port=port).wait_ready()
    try:
        status, _, _ = post_form(server.base + "/login/forgot", {"email": "desk@demo.dermis.test"}, server.base)
        assert status == 200
        state, error, attempts = wait_for_status(tmp_path / "data", "password-link", ("retry", "dead"))
        assert state == "retry" and attempts == 1
        assert ("refused the login" in error) if problem == "wrong-password" else ("cannot reach" in error)
        assert mail.inbox.messages == []
        log = [line for line in server.output().splitlines() if "Message not sent" in line]
        assert log and not any("desk@demo.dermis.test" in line for line in log), "the log names the message, not its recipient"
    finally:
        server.stop()
