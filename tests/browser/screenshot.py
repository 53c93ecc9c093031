"""Takes docs/dashboard.png: the overview of a real ``roost serve`` with some data in it,
1280 pixels wide, in headless chromium. Run it with the project's venv:
``.venv/bin/python tests/browser/screenshot.py`` (after ``make test-browser`` installed chromium)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import WINDOW, open_browser, start_server  # noqa: E402

OUT = HERE.parent.parent / "docs" / "dashboard.png"


def _populate(url: str) -> None:
    """Traffic the overview can show: handled, dead-lettered, waiting messages and jobs."""
    orders = [{"order": n, "fail": n % 7 == 0} for n in range(1, 61)]
    for start in range(0, len(orders), 20):
        batch = [{"body": body} for body in orders[start : start + 20]]
        httpx.post(f"{url}/queues/orders/messages/batch", json={"messages": batch}).raise_for_status()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and httpx.get(f"{url}/queues/orders").json()["backlog"]:
        time.sleep(0.1)
    for n in range(1, 13):
        body = {"to": f"user{n}@example.com", "template": "welcome"}
        httpx.post(f"{url}/queues/emails/messages", json={"body": body, "delay_seconds": 300 * (n % 3)})
    for job, minutes in (({"report": "daily-sales"}, 14), ({"report": "weekly-digest"}, 95), ({"cleanup": "carts"}, 600)):
        httpx.post(f"{url}/rpc/JOBS/jobs/schedule", json={"args": [job, minutes * 60]}).raise_for_status()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = start_server(Path(directory), guarded=False)
        browser = open_browser()
        try:
            _populate(server.url)
            browser.get(f"{server.url}/dashboard")
            time.sleep(1.5)  # a second sample, for the throughput figures
            httpx.post(f"{server.url}/queues/orders/messages", json={"body": {"order": 61}})
            browser.get(f"{server.url}/dashboard")
            # The whole page at 1280 CSS pixels: a viewport as tall as the page, then one shot.
            height = browser.execute_script("return document.documentElement.scrollHeight")
            metrics = {"width": WINDOW[0], "height": height, "deviceScaleFactor": 1, "mobile": False}
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            OUT.write_bytes(browser.get_screenshot_as_png())
        finally:
            browser.quit()
            server.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
