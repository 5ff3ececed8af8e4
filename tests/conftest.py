"""Fixtures for the tests that drive the built `dermis` binary: the CLI, a running server, a real browser."""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dermis_binary() -> Path:
    return Path(os.environ.get("DERMIS_BIN", ROOT / ".build" / "debug" / "dermis"))


def without_history(args):
    """Tests start the demo clinic without its three months of history (an empty course, free calendar) unless they
    ask for it with `--history`."""
    args = tuple(args)
    if ("demo" in args[:1] or "--demo" in args) and "--history" not in args and "--no-history" not in args:
        return args + ("--no-history",)
    return args


def run_dermis(*args, env=None, stdin=None):
    """Runs the CLI and returns (exit code, stdout, stderr)."""
    args = without_history(args)
    merged = {**os.environ, "DATABASE_URL": "", **(env or {})}
    done = subprocess.run([str(dermis_binary()), *args], capture_output=True, text=True, env=merged,
                          input=stdin, timeout=60, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """`dermis serve` on a free loopback port, ready when /healthz answers 200."""

    def __init__(self, data_dir, env=None, extra=(), scheme="http", ssl_context=None, port=None):
        self.port = port or free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.ssl_context = ssl_context
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        merged = {**os.environ, "DATABASE_URL": "", **(env or {})}
        self.process = subprocess.Popen(
            [str(dermis_binary()), "serve", "--port", str(self.port), "--data-dir", str(data_dir), *without_history(extra)],
            stdout=self.log, stderr=subprocess.STDOUT, env=merged, cwd=ROOT)

    def wait_ready(self, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dermis serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2, context=self.ssl_context) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)  # polling for readiness, not timing a test
        raise RuntimeError("dermis serve did not become ready:\n" + self.output())

    def demo_logins(self):
        """The demo staff sign-ins the server printed once at start: {email: password}."""
        logins = {}
        for line in self.output().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[-2].endswith("@demo.dermis.test"):
                logins[parts[-2]] = parts[-1]
        return logins

    def output(self):
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def server(data_dir):
    running = RunningServer(data_dir, extra=("--demo",)).wait_ready()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(5)  # find_element waits for the next page's element to appear
    yield driver
    driver.quit()


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def sign_in(browser, server, email, password):
    """Signs in through the real form."""
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(server.base + "/login")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "sign-in").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda b: "/login" not in b.current_url)


def totp_now(secret_base32, at=None):
    """RFC 6238 code for a base32 secret (what the authenticator app would show)."""
    import base64
    import hashlib
    import hmac
    import struct

    padded = secret_base32 + "=" * (-len(secret_base32) % 8)
    key = base64.b32decode(padded)
    counter = int((at if at is not None else time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{value:06d}"


def post_form(url, fields, origin, headers=None):
    """A same-origin form POST (as a browser sends it); returns (status, body, headers) without following redirects."""
    import urllib.error
    import urllib.parse

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": origin, **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers


def wait_for_url(browser, fragment, seconds=10):
    """Waits until the browser has navigated to a URL containing `fragment`."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds).until(expected_conditions.url_contains(fragment))
    return browser.current_url


def submit_and_wait(browser, element_id, seconds=10):
    """Clicks a submit button and waits until the next page has replaced this one (same URL or not)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, element_id).click()

    def replaced(_):
        # Chromium sometimes reports a replaced page as "Node … does not belong to the document" rather than as a
        # stale element: both mean the old page is gone.
        try:
            page.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise

    WebDriverWait(browser, seconds).until(replaced)


def book_online(browser, server, name, email):
    """A patient books the first free consultation on the public page with no account; returns its start (ISO)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.delete_all_cookies()
    browser.get(server.base + "/book")
    Select(browser.find_element(By.ID, "service")).select_by_value("consultation")
    submit_and_wait(browser, "show-times")
    first = browser.find_element(By.CSS_SELECTOR, "#book-form input[name='start']")
    start = first.get_attribute("value")
    first.click()
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "email").send_keys(email)
    for answer in ("pregnant-no", "isotretinoin-never", "skinCancer-no", "infection-no", "consentToContact"):
        browser.find_element(By.ID, answer).click()
    submit_and_wait(browser, "hold-time")
    return start


def axe_problems(browser):
    """axe-core (from PyPI's axe-selenium-python) run on the page now open: its serious and critical violations, each
    with the elements it names, as readable lines (empty when the page is clean)."""
    from axe_selenium_python import Axe

    axe = Axe(browser)
    axe.inject()
    results = axe.run()
    return [f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def api_json(server, token, path, body=None, method=None, version=None):
    """A JSON API call with a bearer token (and If-Match when `version` is given): (status, decoded JSON or the error text)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if version is not None:
        headers["If-Match"] = f'W/"{version}"'
    request = urllib.request.Request(server.base + path, data=json.dumps(body).encode() if body is not None else None,
                                     method=method or ("POST" if body is not None else "GET"), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
