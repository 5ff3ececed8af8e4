"""A practitioner plans a treatment in a real browser: pick zones on the face map, read plan and aftercare."""
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from conftest import sign_in

PRACTITIONER = "ines.doctor@demo.dermis.test"


def test_pick_zones_on_the_map_and_read_the_plan_and_aftercare(server, browser):
    sign_in(browser, server, PRACTITIONER, server.demo_logins()[PRACTITIONER])
    browser.get(server.base + "/plan")
    assert "Demo clinic" in browser.find_element(By.ID, "demo-badge").text

    # A click on a cheek ticks the cheeks; Enter on the forehead shape ticks the forehead (keyboard use).
    browser.find_element(By.CSS_SELECTOR, ".face-map [data-zone='cheeks']").click()
    assert browser.find_element(By.ID, "zone_cheeks").is_selected()
    forehead = browser.find_element(By.CSS_SELECTOR, ".face-map [data-zone='forehead']")
    forehead.send_keys(Keys.ENTER)
    assert browser.find_element(By.ID, "zone_forehead").is_selected()
    assert "selected" in forehead.get_attribute("class")

    Select(browser.find_element(By.ID, "indication_cheeks")).select_by_value("acne-scars")
    Select(browser.find_element(By.ID, "indication_forehead")).select_by_value("fine-lines")
    Select(browser.find_element(By.ID, "skin")).select_by_value("thick")
    depth = browser.find_element(By.ID, "maxDepth")
    depth.clear()
    depth.send_keys("1.5")
    browser.execute_script("document.getElementById('startDate').value = '2026-12-01'")
    browser.find_element(By.ID, "make-plan").click()

    rows = {row.get_attribute("data-zone"): row for row in browser.find_elements(By.CSS_SELECTOR, "#zones-table tbody tr")}
    assert set(rows) == {"cheeks", "forehead"}
    assert "1.5 mm (recommended 2.0 mm, limited by practitioner)" in rows["cheeks"].text
    assert rows["forehead"].find_element(By.CSS_SELECTOR, ".depth").text == "0.75 mm"
    assert browser.find_element(By.ID, "numbing-minutes").text == "30 min"
    assert "4 sessions, at least 30 days apart" in browser.find_element(By.ID, "series").text
    assert "2026-12-01" in browser.find_element(By.ID, "series").text
    assert browser.find_element(By.ID, "downtime").text.startswith("4–5 days")
    aftercare = browser.find_element(By.ID, "aftercare").text
    assert "hours 0–8: Put nothing on the treated skin." in aftercare
    assert "Mineral sunscreen SPF 30+" in aftercare
    # The form keeps the choices, and the map shows them, after the round trip.
    assert browser.find_element(By.ID, "zone_cheeks").is_selected()
    assert "selected" in browser.find_element(By.CSS_SELECTOR, ".face-map [data-zone='cheeks']").get_attribute("class")


def test_a_plan_with_no_zone_is_refused_with_the_reason_beside_the_form(server, browser):
    sign_in(browser, server, PRACTITIONER, server.demo_logins()[PRACTITIONER])
    browser.get(server.base + "/plan")
    browser.find_element(By.ID, "make-plan").click()
    errors = browser.find_element(By.ID, "errors")
    assert "at least one zone" in errors.text
    assert not browser.find_elements(By.ID, "plan-result")
