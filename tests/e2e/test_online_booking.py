"""In a real browser: a patient books a consultation on the public page with no account, and the
front desk sees it on the calendar."""
from selenium.webdriver.common.by import By

from conftest import book_online, sign_in

DESK = "desk@demo.dermis.test"


def test_a_patient_books_online_and_the_front_desk_sees_it(server, browser):
    start = book_online(browser, server, "Noor Haddad", "noor@example.test")
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
