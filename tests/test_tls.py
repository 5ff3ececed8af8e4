"""HTTPS served by Dermis itself: TLS 1.2 and up only, HSTS, and Secure __Host- cookies (docs/SECURITY.md R3)."""
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import warnings

import pytest

warnings.filterwarnings("ignore", message="ssl.TLSVersion.TLSv1_1 is deprecated", category=DeprecationWarning)

from conftest import RunningServer, free_port, run_dermis


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def trusting(cert):
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    return context


def handshake(port, version, cert):
    """The TLS version agreed with the server at `port` when the client offers only `version`, or None if refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(cert))
    context.check_hostname = False
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    context.minimum_version = version
    context.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
            return tls.version()
    except (ssl.SSLError, ConnectionResetError):
        return None


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


def test_tls_1_1_is_refused_and_1_2_served_with_hsts_and_secure_cookies(tmp_path, certificate):
    cert, key = certificate
    # Control: this client can speak TLS 1.1 to a server that allows it, so a refusal below is Dermis's doing.
    control_port = free_port()
    control = subprocess.Popen(["openssl", "s_server", "-accept", str(control_port), "-cert", str(cert), "-key", str(key),
                                "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-quiet"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", control_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)  # polling for readiness, not timing a test
        control_version = handshake(control_port, ssl.TLSVersion.TLSv1_1, cert)
    finally:
        control.kill()
    if control_version != "TLSv1.1":
        pytest.skip("this machine's OpenSSL cannot offer TLS 1.1 at all")

    server = RunningServer(tmp_path / "data", extra=("--demo", "--tls-cert", str(cert), "--tls-key", str(key)),
                           scheme="https", ssl_context=trusting(cert)).wait_ready()
    try:
        assert handshake(server.port, ssl.TLSVersion.TLSv1_1, cert) is None
        assert handshake(server.port, ssl.TLSVersion.TLSv1_2, cert) == "TLSv1.2"
        with urllib.request.urlopen(server.base + "/login", context=trusting(cert), timeout=10) as response:
            assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        desk = "desk@demo.dermis.test"
        password = server.demo_logins()[desk]
        body = f"email={urllib.parse.quote(desk)}&password={urllib.parse.quote(password)}".encode()
        request = urllib.request.Request(server.base + "/login", data=body,
                                         headers={"Origin": server.base, "Content-Type": "application/x-www-form-urlencoded"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=trusting(cert)), NoRedirect)
        try:
            opener.open(request, timeout=10)
            raise AssertionError("sign-in did not redirect")
        except urllib.error.HTTPError as error:
            assert error.code == 303
            cookie = error.headers["Set-Cookie"]
        assert cookie.startswith("__Host-dermis_session=") and "Secure" in cookie and "HttpOnly" in cookie
    finally:
        server.stop()


def test_a_certificate_without_its_key_is_refused_at_start_naming_the_flag(tmp_path, certificate):
    cert, _ = certificate
    code, _, err = run_dermis("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert))
    assert code != 0 and "--tls-key" in err
