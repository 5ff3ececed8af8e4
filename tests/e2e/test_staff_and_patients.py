"""In a real browser: a newcomer creates an admin, signs in with TOTP, adds a practitioner and a
patient, and sees the patient's reads and edits in the audit log."""
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import RunningServer, run_dermis, totp_now, wait_for_url

ADMIN = "owner@clinic.example"
PASSWORD = "a long enough passphrase"


def test_admin_totp_practitioner_patient_and_audit(tmp_path, browser):
    data = tmp_path / "data"
    code, _, err = run_dermis("create-admin", "--email", ADMIN, "--clinic-name", "Browser Clinic", "--time-zone", "UTC",
                              "--password-stdin", "--data-dir", str(data), stdin=PASSWORD + "\n")
    assert code == 0, err
    server = RunningServer(data).wait_ready()
    try:
        browser.delete_all_cookies()
        browser.get(server.base + "/patients")
        wait_for_url(browser, "/login")
        browser.find_element(By.ID, "email").send_keys(ADMIN)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()

        # Admins must set up an authenticator first.
        wait_for_url(browser, "/account/totp")
        secret = browser.find_element(By.ID, "totp-secret").text
        browser.find_element(By.ID, "code").send_keys(totp_now(secret))
        browser.find_element(By.ID, "enable-totp").click()
        codes = browser.find_elements(By.CSS_SELECTOR, "#recovery-codes code")
        assert len(codes) == 10
        browser.find_element(By.ID, "continue").click()

        # Sign out and back in: now the code is asked for.
        browser.find_element(By.ID, "sign-out").click()
        wait_for_url(browser, "/login")
        browser.find_element(By.ID, "email").send_keys(ADMIN)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        wait_for_url(browser, "/login/totp")
        browser.find_element(By.ID, "code").send_keys(totp_now(secret))
        browser.find_element(By.ID, "verify").click()
        assert browser.find_element(By.ID, "account-link").text == "Clinic admin"

        # Add a practitioner with a credential and a maximum depth.
        browser.get(server.base + "/admin/staff")
        browser.find_element(By.ID, "staffName").send_keys("Dr Lena Park")
        browser.find_element(By.ID, "staffEmail").send_keys("lena.park@clinic.example")
        Select(browser.find_element(By.ID, "staffRole")).select_by_value("practitioner")
        browser.find_element(By.ID, "staffCredential").send_keys("physician")
        browser.find_element(By.ID, "staffMaxDepth").send_keys("2.0")
        browser.find_element(By.ID, "create-staff").click()
        # No password is shown or set by the admin: a one-time link to pass on.
        assert browser.find_element(By.ID, "password-link").text.startswith(server.base + "/password/")
        row = browser.find_element(By.CSS_SELECTOR, "#staff-list tr[data-email='lena.park@clinic.example']")
        assert "Dr Lena Park" in row.text

        # Add a patient; a bad field is refused beside it first.
        browser.get(server.base + "/patients")
        browser.find_element(By.ID, "add-patient").click()
        browser.find_element(By.ID, "givenName").send_keys("Zoë")
        browser.find_element(By.ID, "familyName").send_keys("Fontaine")
        browser.execute_script("document.getElementById('dateOfBirth').value = '1985-04-12'")
        browser.find_element(By.ID, "phone").send_keys("0612345678")
        browser.find_element(By.ID, "save-patient").click()
        assert "international number" in browser.find_element(By.ID, "error-phone").text
        phone = browser.find_element(By.ID, "phone")
        phone.clear()
        phone.send_keys("+33 6 12 34 56 78")
        browser.find_element(By.ID, "save-patient").click()
        assert browser.find_element(By.ID, "patient-name").text.startswith("Zoë Fontaine")
        patient_url = browser.current_url
        patient_id = patient_url.rstrip("/").split("/")[-1]

        # Edit it.
        browser.find_element(By.ID, "edit-patient").click()
        fitzpatrick = browser.find_element(By.ID, "fitzpatrickType")
        fitzpatrick.clear()
        fitzpatrick.send_keys("3")
        browser.find_element(By.ID, "save-patient").click()
        assert browser.find_element(By.ID, "saved").is_displayed()

        # Search finds her without the accent.
        browser.get(server.base + "/patients?q=zoe+fontaine")
        assert "Zoë Fontaine" in browser.find_element(By.ID, "patient-list").text

        # The audit log shows her reads and the edit, by the admin.
        browser.get(server.base + f"/admin/audit?patient={patient_id}")
        log = browser.find_element(By.ID, "audit-list").text
        assert "read" in log and "update" in log and "create" in log
        assert ADMIN in log
    finally:
        server.stop()
