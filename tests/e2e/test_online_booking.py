"""In a real browser: a patient books a consultation on the public page with no account, and the
front desk sees it on the calendar."""
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import sign_in, submit_and_wait

DESK = "desk@demo.dermis.test"


def test_a_patient_books_online_and_the_front_desk_sees_it(server, browser):
    browser.delete_all_cookies()
    browser.get(server.base + "/book")
    Select(browser.find_element(By.ID, "service")).select_by_value("consultation")
    submit_and_wait(browser, "show-times")
    first = browser.find_element(By.CSS_SELECTOR, "#book-form input[name='start']")
    start = first.get_attribute("value")
    first.click()
    browser.find_element(By.ID, "name").send_keys("Noor Haddad")
    browser.find_element(By.ID, "email").send_keys("noor@example.test")
    for answer in ("pregnant-no", "isotretinoin-never", "skinCancer-no", "infection-no", "consentToContact"):
        browser.find_element(By.ID, answer).click()
    submit_and_wait(browser, "hold-time")
    assert browser.find_element(By.ID, "outcome-title").text == "Your time is held"
    assert "email" in browser.find_element(By.ID, "held").text

    # The front desk signs in and finds the pending booking on that day's calendar.
    sign_in(browser, server, DESK, server.demo_logins()[DESK])
    browser.get(server.base + "/calendar?date=" + start[:10])
    calendar = browser.find_element(By.ID, "day-calendar")
    booking = calendar.find_element(By.XPATH, ".//td[contains(@class, 'booking')][.//a[contains(., 'Noor Haddad')]]")
    assert "pending" in booking.text
    booking.find_element(By.TAG_NAME, "a").click()
    assert "Noor Haddad" in browser.find_element(By.ID, "who").text
    assert browser.find_element(By.ID, "status").text == "pending"
    # Keyboard-usable booking: a free quarter is a link to booking that time.
    browser.get(server.base + "/calendar?date=" + start[:10])
    assert browser.find_elements(By.CSS_SELECTOR, "#day-calendar a.free-slot")
