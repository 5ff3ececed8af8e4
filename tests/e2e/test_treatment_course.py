"""In a real browser: a practitioner takes a demo patient from intake to a signed session chart; the
patient opens her aftercare link with no account, checks in with a sign of infection, and the practitioner sees the
adverse event it opened."""
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import sign_in, submit_and_wait, wait_for_url

DOCTOR = "ines.doctor@demo.dermis.test"


def test_intake_screening_plan_consent_and_signed_chart(server, browser):
    sign_in(browser, server, DOCTOR, server.demo_logins()[DOCTOR])

    # Find the patient and open her course.
    browser.get(server.base + "/patients?q=zoe")
    browser.find_element(By.LINK_TEXT, "Zoë Lefèvre").click()
    browser.find_element(By.ID, "open-course").click()
    steps = browser.find_element(By.ID, "course-steps").text
    assert "Intake" in steps and "Session" in steps

    # Intake → screening.
    browser.find_element(By.CSS_SELECTOR, "li[data-step='Intake'] a").click()
    browser.find_element(By.ID, "pregnant-no").click()
    browser.find_element(By.ID, "nursing-no").click()
    browser.find_element(By.ID, "fitzpatrick-2").click()
    browser.find_element(By.ID, "treat-cheeks").click()
    browser.find_element(By.ID, "treat-forehead").click()
    browser.find_element(By.ID, "condition-herpes-simplex").click()
    browser.find_element(By.ID, "save-intake").click()
    wait_for_url(browser, "/screenings/")
    assert browser.find_element(By.ID, "outcome").text.startswith("Eligible")
    assert browser.find_element(By.ID, "cleared").is_displayed()

    # Plan: the intake's zones are ticked; choose acne scars for the cheeks, lower the depth, save.
    browser.find_element(By.LINK_TEXT, "Back to the course").click()
    browser.find_element(By.CSS_SELECTOR, "li[data-step='Plan'] a").click()
    assert browser.find_element(By.ID, "zone_cheeks").is_selected() and browser.find_element(By.ID, "zone_forehead").is_selected()
    assert "selected" in browser.find_element(By.CSS_SELECTOR, ".face-map [data-zone='cheeks']").get_attribute("class")
    Select(browser.find_element(By.ID, "indication_cheeks")).select_by_value("acne-scars")
    Select(browser.find_element(By.ID, "skin")).select_by_value("thick")
    submit_and_wait(browser, "make-plan")
    depth = browser.find_element(By.ID, "depth_cheeks")
    assert depth.get_attribute("value") == "2.0"
    depth.clear()
    depth.send_keys("1.5")
    browser.find_element(By.ID, "save-plan").click()
    wait_for_url(browser, "/course")
    assert "version 1" in browser.find_element(By.CSS_SELECTOR, "li[data-step='Plan']").text

    # Consent: the patient types her name and signs on the pad.
    browser.find_element(By.CSS_SELECTOR, "li[data-step='Consent'] a").click()
    browser.find_element(By.ID, "typedName").send_keys("Zoë Lefèvre")
    pad = browser.find_element(By.ID, "signature-pad")
    ActionChains(browser).move_to_element_with_offset(pad, -120, 10).click_and_hold() \
        .move_by_offset(60, -30).move_by_offset(60, 40).move_by_offset(80, -20).release().perform()
    browser.find_element(By.ID, "sign-consent").click()
    wait_for_url(browser, "/consents/")
    assert browser.find_element(By.ID, "signed-name").text == "Zoë Lefèvre"
    assert browser.find_element(By.ID, "signature-verified").is_displayed()

    # The session: checklist in order, numbing, pen and lot, zones, scores, sign.
    browser.find_element(By.LINK_TEXT, "Back to the course").click()
    browser.find_element(By.ID, "start-session").click()
    wait_for_url(browser, "/sessions/")
    submit_and_wait(browser, "numbing-now")
    browser.find_element(By.ID, "anaesthetic-at")
    browser.find_element(By.ID, "identityConfirmed").click()
    browser.find_element(By.ID, "skinCleansed").click()
    Select(browser.find_element(By.ID, "device")).select_by_index(1)
    Select(browser.find_element(By.ID, "lot")).select_by_index(1)
    # Saving before the numbing minimum is refused, with the reason; what was typed stays on the page.
    submit_and_wait(browser, "save-chart")
    assert "minutes the protocol requires" in browser.find_element(By.ID, "errors").text
    assert browser.find_element(By.ID, "identityConfirmed").is_selected() and browser.find_element(By.ID, "skinCleansed").is_selected()
    browser.find_element(By.ID, "numbingOverrideReason").send_keys("Numbed for 45 minutes in the waiting room before check-in")
    # A depth above the plan is refused too.
    cheeks = browser.find_element(By.ID, "depth_cheeks")
    cheeks.clear()
    cheeks.send_keys("2.0")
    submit_and_wait(browser, "save-chart")
    assert "deeper than the plan" in browser.find_element(By.ID, "errors").text
    assert browser.find_element(By.ID, "numbingOverrideReason").get_attribute("value").startswith("Numbed for 45")
    for element_id, value in (("depth_cheeks", "1.5"), ("painScore", "3"), ("erythemaGrade", "2")):
        field = browser.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)
    submit_and_wait(browser, "save-chart")
    assert not browser.find_elements(By.ID, "errors")
    assert browser.find_element(By.CSS_SELECTOR, "#chart-zones tr[data-zone='cheeks'] .channels").text == "280"
    submit_and_wait(browser, "sign-chart")
    assert browser.find_element(By.ID, "chart-signed").text == "signed"
    assert "signed" in browser.find_element(By.ID, "chart-history").text

    # The course shows the session done.
    browser.find_element(By.LINK_TEXT, "Back to the course").click()
    assert "done" in browser.find_element(By.CSS_SELECTOR, "li[data-step='Session']").text

    # Follow-up: the signed chart issued aftercare; the practitioner issues the patient's link.
    browser.find_element(By.CSS_SELECTOR, "#follow-ups a").click()
    assert "Put nothing on the treated skin" in browser.find_element(By.ID, "aftercare-items").text
    submit_and_wait(browser, "issue-link")
    link = browser.find_element(By.ID, "new-link").text
    assert "/care/" in link and len(link.rsplit("/", 1)[1]) >= 43

    # The patient, with no account: today's instructions first, then a check-in with pus.
    browser.delete_all_cookies()
    browser.get(link)
    assert "Today — day 1" in browser.find_element(By.ID, "today").text
    assert "Put nothing on the treated skin" in browser.find_element(By.ID, "today").text
    browser.find_element(By.CSS_SELECTOR, "input[name='redness'][value='2']").click()
    browser.find_element(By.CSS_SELECTOR, "input[name='pain'][value='5']").click()
    browser.find_element(By.ID, "sign-pus").click()
    browser.find_element(By.ID, "notes").send_keys("Yellow crust on the left cheek this morning")
    submit_and_wait(browser, "send-check-in")
    thanks = browser.find_element(By.ID, "check-in-thanks").text
    assert "reached the clinic" in thanks and "pus" in browser.find_element(By.ID, "check-in-flags").text.lower()

    # The practitioner sees the adverse event the flag opened, with its reason and source.
    sign_in(browser, server, DOCTOR, server.demo_logins()[DOCTOR])
    browser.get(server.base + "/adverse-events")
    row = browser.find_element(By.CSS_SELECTOR, "#adverse-events tr[data-type='infection']")
    assert "Zoë Lefèvre" in row.text and "severe" in row.text and "check-in rule" in row.text
    row.find_element(By.TAG_NAME, "a").click()
    assert "Clinic SkinPen handouts" in browser.find_element(By.NAME, "description").get_attribute("value")
