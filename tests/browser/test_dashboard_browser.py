"""The dashboard in headless chromium against a real ``roost serve``: the backlog on the
overview, a dead-lettered message redriven through its confirmation and handled by the
consumer, the login form behind ``internal_token``, and CSRF refusals."""

from __future__ import annotations

import time

import httpx
from conftest import TOKEN
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 20
BEARER = {"authorization": f"Bearer {TOKEN}"}


def _wait(driver, condition, message: str):
    return WebDriverWait(driver, WAIT_SECONDS).until(condition, message)


def _click(driver, by: str, value: str) -> None:
    """Click a link or button that loads a page, and wait for that page."""
    old = driver.find_element(By.TAG_NAME, "html")

    def clicked(d) -> bool:
        # The page's live refresh may replace the element between finding and clicking it.
        try:
            d.find_element(by, value).click()
        except StaleElementReferenceException:
            return False
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc):
                raise
            return False
        return True

    _wait(driver, clicked, f"{value} could not be clicked")
    _wait(driver, staleness_of(old), f"clicking {value} loaded no page")


def _cell(driver, queue: str, column: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-queue="{queue}"] td.{column}').text


def _handled(url: str, headers: dict | None = None) -> list:
    return httpx.post(f"{url}/rpc/LOG/log/handled", headers=headers).json()["result"]


def test_backlog_dead_letter_and_redrive_through_the_page(browser, server):
    url = server.url
    assert httpx.post(f"{url}/queues/orders/pause").status_code == 200
    for body in ({"order": 1}, {"order": 2, "fail": True}, {"order": 3}):
        assert httpx.post(f"{url}/queues/orders/messages", json={"body": body}).status_code == 202

    browser.get(f"{url}/dashboard")
    assert browser.title.startswith("Overview")
    assert _cell(browser, "orders", "backlog") == "3"
    assert "paused" in browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="orders"]').text

    # Resume on the queue's page, through the confirmation step.
    _click(browser, By.LINK_TEXT, "orders")
    assert browser.find_element(By.ID, "backlog").text == "3"
    _click(browser, By.ID, "pause-resume")
    assert "starts again" in browser.find_element(By.ID, "question").text
    _click(browser, By.ID, "confirm")
    assert "Resumed" in browser.find_element(By.ID, "notice").text

    # The overview's figures update live (its script), without a reload.
    browser.get(f"{url}/dashboard")
    _wait(browser, lambda d: _cell(d, "orders", "dead-lettered") == "1", "order 2 never died")
    _wait(browser, lambda d: _cell(d, "orders-dlq", "backlog") == "1", "the DLQ never showed it")
    assert sorted(body["order"] for body in _handled(url)) == [1, 3]

    # The dead-lettered message on the DLQ's page: redrive it, selected by its checkbox.
    _click(browser, By.LINK_TEXT, "orders-dlq")
    rows = browser.find_elements(By.CSS_SELECTOR, "#messages tr[data-message]")
    assert len(rows) == 1
    assert '"order": 2' in rows[0].find_element(By.CSS_SELECTOR, "pre.body").text
    assert "out of retries from orders" in rows[0].find_element(By.CSS_SELECTOR, "td.dead-letter").text
    message_id = rows[0].get_attribute("data-message")
    rows[0].find_element(By.CSS_SELECTOR, 'input[name="ids"]').click()  # a checkbox: no page
    _click(browser, By.ID, "redrive")
    question = browser.find_element(By.ID, "question").text
    assert "The 1 selected message(s)" in question and "back to the queue each died in" in question
    assert message_id in browser.find_element(By.ID, "redrive-ids").text
    assert httpx.get(f"{url}/queues/orders-dlq").json()["backlog"] == 1  # not moved before the yes
    _click(browser, By.ID, "confirm")
    assert "Redrove 1 message(s)." in browser.find_element(By.ID, "notice").text

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and len(_handled(url)) < 3:
        time.sleep(0.1)
    assert sorted(body["order"] for body in _handled(url)) == [1, 2, 3]
    browser.refresh()
    assert browser.find_element(By.ID, "backlog").text == "0"


def test_the_login_form_and_csrf_refusals_behind_the_token(browser, guarded_server):
    url = guarded_server.url
    assert httpx.get(f"{url}/dashboard").status_code == 401
    browser.delete_all_cookies()
    browser.get(f"{url}/dashboard")
    assert "Log in with the internal token" in browser.find_element(By.ID, "error").text
    _click(browser, By.ID, "login-link")

    browser.find_element(By.ID, "token").send_keys("not-the-token")
    _click(browser, By.ID, "login-submit")
    assert "not the internal token" in browser.find_element(By.ID, "error").text
    browser.get(f"{url}/dashboard/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    _click(browser, By.ID, "login-submit")
    _wait(browser, lambda d: d.title.startswith("Overview"), "the login did not lead to the overview")
    session = browser.get_cookie("roost_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and TOKEN not in session["value"]
    assert _cell(browser, "orders", "backlog") == "0"

    assert httpx.post(f"{url}/queues/orders/pause", headers=BEARER).status_code == 200
    assert httpx.post(f"{url}/queues/orders/messages", headers=BEARER, json={"body": {"order": 9}}).status_code == 202

    # A form whose CSRF token was taken out is refused, at either step, and nothing changes.
    browser.get(f"{url}/dashboard/queues/orders")
    browser.execute_script('document.querySelector("#actions input[name=csrf]").remove()')
    _click(browser, By.ID, "purge")
    assert browser.title.startswith("Error 403")
    assert "CSRF token is missing or wrong" in browser.find_element(By.ID, "error").text

    browser.get(f"{url}/dashboard/queues/orders")
    _click(browser, By.ID, "purge")
    assert "cannot be undone" in browser.find_element(By.ID, "question").text
    browser.execute_script('document.querySelector("#confirm-form input[name=csrf]").value = "forged"')
    _click(browser, By.ID, "confirm")
    assert browser.title.startswith("Error 403")
    assert httpx.get(f"{url}/queues/orders", headers=BEARER).json()["backlog"] == 1

    # With the token intact, the same purge goes through; logging out closes the dashboard.
    browser.get(f"{url}/dashboard/queues/orders")
    _click(browser, By.ID, "purge")
    _click(browser, By.ID, "confirm")
    assert "Purged 1 message(s)." in browser.find_element(By.ID, "notice").text
    assert httpx.get(f"{url}/queues/orders", headers=BEARER).json()["backlog"] == 0
    _click(browser, By.XPATH, '//button[text()="Log out"]')
    assert browser.find_element(By.ID, "token")  # back on the login form
    browser.get(f"{url}/dashboard")
    assert "Log in with the internal token" in browser.find_element(By.ID, "error").text


def test_the_job_page_shows_progress_and_follows_its_events(browser, server):
    url = server.url
    update = f"{url}/rpc/JOBS/jobs/update"
    httpx.post(update, json={"args": ["job-42", {"status": "processing", "progress": 35}]}).raise_for_status()
    browser.get(f"{url}/dashboard")
    browser.find_element(By.ID, "job-id").send_keys("job-42")
    _click(browser, By.CSS_SELECTOR, "#job-lookup button")
    assert browser.current_url.endswith("/dashboard/jobs/job-42")
    assert browser.find_element(By.ID, "job-status").text == "processing"
    assert browser.find_element(By.ID, "job-bar").get_attribute("value") == "35"
    httpx.post(update, json={"args": ["job-42", {"progress": 80}]}).raise_for_status()
    _wait(browser, lambda d: d.find_element(By.ID, "job-bar").get_attribute("value") == "80", "no live progress")
    result = {"status": "completed", "progress": 100, "result": {"rows": 3}}
    httpx.post(update, json={"args": ["job-42", result]}).raise_for_status()
    _wait(browser, lambda d: d.find_element(By.ID, "job-status").text == "completed", "no live status")
    assert '"rows": 3' in browser.find_element(By.ID, "job-result").text
