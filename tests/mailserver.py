"""A real SMTP server for the tests (aiosmtpd): STARTTLS required, AUTH required, and what arrives kept for parsing."""
import email
import email.policy
import ssl
import subprocess
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "dermis", "mail-secret-passphrase"


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.original_content, policy=email.policy.default)))
        return "250 OK"

    def wait_for(self, count=1, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.1)  # polling for delivery, not timing a test
        raise AssertionError(f"{len(self.messages)} message(s) arrived, {count} expected")


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535 on a failure


class MailServer:
    def __init__(self, folder, port, inbox=None):
        self.cert, key = make_certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(key))
        self.inbox = inbox or Inbox()
        self.port = port
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                                     auth_required=True, authenticator=authenticator, auth_require_tls=True)

    def url(self, password=PASSWORD):
        return f"smtp://{USER}:{password}@127.0.0.1:{self.port}"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
