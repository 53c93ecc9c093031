"""The dashboard through HTTP, in process: its pages, the confirmation step, CSRF, the login
cookie behind ``internal_token``, error pages, and escaping. (tests/browser drives it in
chromium against a real ``roost serve``.)"""

from __future__ import annotations

import re

import httpx
import pytest

from actors import schedule_job, update_job_status
from runtime import open_runtime

TOKEN = "dash-token-5a4b3c2d1e"
HTML = {"accept": "text/html"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def config(**http: str) -> dict:
    return {"vars": {"ADMIN_KEY": TOKEN}, "http": http}


# No push consumer: the tests pull and retry, so nothing races them.
QUEUES = [{"queue": "work", "binding": "WORK", "max_retries": 0, "dead_letter_queue": "work-dlq"}]


async def _client(rt) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi_app), base_url="http://roost.test")


@pytest.fixture
async def dash(data_dir):
    async with open_runtime(config(), data_dir=data_dir, queues=QUEUES) as rt:
        async with await _client(rt) as http:
            http.rt = rt
            yield http


@pytest.fixture
async def guarded(data_dir):
    async with open_runtime(config(internal_token="ADMIN_KEY"), data_dir=data_dir, queues=QUEUES) as rt:
        async with await _client(rt) as http:
            http.rt = rt
            yield http


async def _dead_letter(rt, body) -> str:
    """Send ``body`` to work and let it die there: it lands in work-dlq. Its id."""
    message_id = await rt.queue("work").send(body)
    (leased,) = await rt.queue("work").pull(batch_size=1)
    await rt.queue("work").retry([leased.lease_id])
    return message_id


def _csrf(page: httpx.Response) -> str:
    """The CSRF token a page's forms carry."""
    return _CSRF.search(page.text).group(1)


async def _cookie_token(http: httpx.AsyncClient) -> str:
    """The CSRF cookie a page sets, as a form would carry it."""
    await http.get("/dashboard")
    return http.cookies["roost_csrf"]


async def test_the_overview_counts_live_actors_per_binding(data_dir):
    from runtime import Actor

    class Counted(Actor):
        async def touch(self) -> int:
            return 1

    async with open_runtime(config(), data_dir=data_dir, actors={"COUNTED": Counted}) as rt:
        for name in ("a", "b", "c"):
            await rt.env.COUNTED.get_by_name(name).touch()
        async with await _client(rt) as http:
            page = await http.get("/dashboard")
    table = re.search(r'<table id="live-by-binding">(.*?)</table>', page.text, re.DOTALL).group(1)
    assert re.search(r"<td>COUNTED</td><td class=\"num\">3</td>", table)


async def test_the_overview_shows_every_queue_with_its_figures(dash):
    await dash.rt.queue("work").send({"n": 1})
    await dash.rt.queue("work").send({"n": 2})
    await _dead_letter(dash.rt, {"n": 3})
    page = await dash.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    row = re.search(r'<tr data-queue="work">(.*?)</tr>', page.text, re.DOTALL).group(1)
    assert '<td class="num backlog">2</td>' in row
    assert '<td class="num dead-lettered">1</td>' in row
    assert 'href="/dashboard/queues/work-dlq"' in row
    dlq = re.search(r'<tr data-queue="work-dlq">(.*?)</tr>', page.text, re.DOTALL).group(1)
    assert '<td class="num backlog">1</td>' in dlq
    assert 'id="stats"' in page.text and "Commit latency" in page.text and "Alarms pending" in page.text
    assert "No scheduled jobs pending." in page.text
    assert "open to anyone" in page.text  # no internal_token: it says so


async def test_a_page_sets_a_strict_httponly_csrf_cookie_and_a_script_nonce(dash):
    page = await dash.get("/dashboard")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("roost_csrf=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["content-security-policy"]).group(1)
    assert f'<script nonce="{nonce}">' in page.text
    again = await dash.get("/dashboard/queues/work")
    assert "set-cookie" not in again.headers  # the browser has it now
    assert _csrf(again) == dash.cookies["roost_csrf"]


async def test_a_message_body_is_escaped(dash):
    await _dead_letter(dash.rt, {"note": "<script>alert('x')</script>"})
    await dash.rt.queue("work").send("<img src=x onerror=alert(1)>", content_type="text")
    for path in ("/dashboard/queues/work", "/dashboard/queues/work-dlq"):
        page = await dash.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in (await dash.get("/dashboard/queues/work")).text
    assert "&lt;script&gt;alert(" in (await dash.get("/dashboard/queues/work-dlq")).text


async def test_the_dead_letter_queue_page_shows_why_and_where_from(dash):
    message_id = await _dead_letter(dash.rt, {"order": 7})
    page = await dash.get("/dashboard/queues/work-dlq")
    row = re.search(rf'<tr data-message="{message_id}">(.*?)</tr>', page.text, re.DOTALL).group(1)
    assert f'name="ids" value="{message_id}"' in row
    assert "out of retries" in row and 'href="/dashboard/queues/work"' in row
    assert "after 1 attempt(s)" in row
    assert "&#34;order&#34;: 7" in row


async def test_redrive_of_selected_ids_goes_through_a_confirmation(dash):
    first = await _dead_letter(dash.rt, {"n": 1})
    second = await _dead_letter(dash.rt, {"n": 2})
    csrf = _csrf(await dash.get("/dashboard/queues/work-dlq"))
    form = {"csrf": csrf, "action": "redrive", "ids": [first]}
    confirm = await dash.post("/dashboard/queues/work-dlq/confirm", data=form)
    assert confirm.status_code == 200
    assert "The 1 selected message(s)" in confirm.text and first in confirm.text
    assert "back to the queue each died in" in confirm.text
    assert (await dash.rt.queue("work-dlq").metrics())["backlog"] == 2  # nothing moved yet
    done = await dash.post("/dashboard/queues/work-dlq/act", data={**form, "csrf": _csrf(confirm)})
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard/queues/work-dlq?done=redrive&n=1"
    assert [m["id"] for m in await dash.rt.queue("work").peek()] == [first]
    assert [m["id"] for m in await dash.rt.queue("work-dlq").peek()] == [second]
    shown = await dash.get(done.headers["location"])
    assert "Redrove 1 message(s)." in shown.text


async def test_redrive_all_to_another_queue_and_purge_pause_resume(dash):
    await _dead_letter(dash.rt, {"n": 1})
    await _dead_letter(dash.rt, {"n": 2})
    csrf = await _cookie_token(dash)
    act = "/dashboard/queues/work-dlq/act"
    moved = await dash.post(act, data={"csrf": csrf, "action": "redrive", "to": "work"})
    assert moved.headers["location"].endswith("done=redrive&n=2")
    assert (await dash.rt.queue("work").metrics())["backlog"] == 2
    await dash.post("/dashboard/queues/work/act", data={"csrf": csrf, "action": "pause"})
    assert (await dash.rt.queue("work").metrics())["paused"] is True
    page = await dash.get("/dashboard/queues/work")
    assert 'value="resume"' in page.text and '<span class="paused">paused</span>' in page.text
    await dash.post("/dashboard/queues/work/act", data={"csrf": csrf, "action": "resume"})
    assert (await dash.rt.queue("work").metrics())["paused"] is False
    purge = await dash.post("/dashboard/queues/work/confirm", data={"csrf": csrf, "action": "purge"})
    assert "Every message of work (2 now" in purge.text
    purged = await dash.post("/dashboard/queues/work/act", data={"csrf": csrf, "action": "purge"})
    assert purged.headers["location"].endswith("done=purge&n=2")
    assert (await dash.rt.queue("work").metrics())["backlog"] == 0


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
@pytest.mark.parametrize("step", ["confirm", "act"])
async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(dash, csrf, step):
    await dash.rt.queue("work").send({"n": 1})
    await dash.get("/dashboard")  # the browser holds the cookie; the form lacks the token
    form = {"action": "purge"} if csrf is None else {"action": "purge", "csrf": csrf}
    refused = await dash.post(f"/dashboard/queues/work/{step}", data=form)
    assert refused.status_code == 403
    assert "CSRF token is missing or wrong" in refused.text and "Nothing was changed" in refused.text
    assert (await dash.rt.queue("work").metrics())["backlog"] == 1


async def test_a_post_with_the_token_but_no_cookie_is_refused(dash):
    await dash.rt.queue("work").send({"n": 1})
    csrf = await _cookie_token(dash)
    dash.cookies.clear()
    refused = await dash.post("/dashboard/queues/work/act", data={"csrf": csrf, "action": "purge"})
    assert refused.status_code == 403
    assert (await dash.rt.queue("work").metrics())["backlog"] == 1


async def test_an_unknown_queue_is_a_404_page_everywhere(dash):
    csrf = await _cookie_token(dash)
    for method, path in [
        ("GET", "/dashboard/queues/%3Cb%3Enope"),
        ("POST", "/dashboard/queues/nope/confirm"),
        ("POST", "/dashboard/queues/nope/act"),
    ]:
        page = await dash.request(method, path, data={"csrf": csrf, "action": "purge"} if method == "POST" else None)
        assert page.status_code == 404, path
        assert "There is no queue named" in page.text and "<b>nope" not in page.text
    target = await dash.post(
        "/dashboard/queues/work-dlq/confirm", data={"csrf": csrf, "action": "redrive", "to": "elsewhere"}
    )
    assert target.status_code == 404 and "no queue named &#39;elsewhere&#39;" in target.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "explode"}, "the action must be one of"),
        ({"action": "redrive", "ids": ["not-an-id"]}, "is not a message id"),
        ({"action": "redrive", "ids": ["ABCDEF0123456789abcdef0123456789"]}, "is not a message id"),
    ],
)
async def test_bad_form_fields_are_a_400_page_and_change_nothing(dash, form, message):
    await _dead_letter(dash.rt, {"n": 1})
    csrf = await _cookie_token(dash)
    for step in ("confirm", "act"):
        refused = await dash.post(f"/dashboard/queues/work-dlq/{step}", data={"csrf": csrf, **form})
        assert refused.status_code == 400 and message in refused.text
    assert (await dash.rt.queue("work-dlq").metrics())["backlog"] == 1


async def test_redriving_messages_that_died_nowhere_is_a_400_page(dash):
    await dash.rt.queue("work").send({"n": 1})
    csrf = await _cookie_token(dash)
    refused = await dash.post("/dashboard/queues/work/act", data={"csrf": csrf, "action": "redrive"})
    assert refused.status_code == 400 and "did not die in another queue" in refused.text
    assert (await dash.rt.queue("work").metrics())["backlog"] == 1


async def test_a_scheduled_job_is_listed_and_cancelled(dash):
    job_id = await schedule_job(dash.rt.env, {"report": "<weekly>"}, 4_000_000_000, queue="work")
    page = await dash.get("/dashboard")
    row = re.search(rf'<tr data-job="{job_id}">(.*?)</tr>', page.text, re.DOTALL).group(1)
    assert "&lt;weekly&gt;" in row and "work" in row and row.count("in ") >= 1
    action = f"/dashboard/scheduled/{job_id}/cancel"
    assert (await dash.post(action, data={"csrf": "wrong"})).status_code == 403
    done = await dash.post(action, data={"csrf": _csrf(page)})
    assert done.status_code == 303
    assert f"Cancelled scheduled job {job_id}." in (await dash.get(done.headers["location"])).text
    assert "No scheduled jobs pending." in (await dash.get("/dashboard")).text
    bad = await dash.post("/dashboard/scheduled/nope/cancel", data={"csrf": _csrf(page)})
    assert bad.status_code == 400 and "not a job id" in bad.text


async def test_the_job_page_shows_status_progress_and_the_events_url(dash):
    await update_job_status(dash.rt.env, "order/1 <x>", status="processing", progress=40)
    looked_up = await dash.get("/dashboard/jobs", params={"id": "order/1 <x>"})
    assert looked_up.status_code == 303
    assert looked_up.headers["location"] == "/dashboard/jobs/order%2F1%20%3Cx%3E"
    page = await dash.get("/dashboard/jobs/order%2F1%20%3Cx%3E")
    assert page.status_code == 200
    assert '<progress id="job-bar" max="100" value="40.0">' in page.text
    assert '<td id="job-status">processing</td>' in page.text
    assert 'data-events="/jobs/order%2F1%20%3Cx%3E/events"' in page.text
    assert "new EventSource" in page.text and "&lt;x&gt;" in page.text and "<x>" not in page.text
    await update_job_status(dash.rt.env, "done-1", status="completed", progress=100, result={"rows": 3})
    done = await dash.get("/dashboard/jobs/done-1")
    assert "This job has finished." in done.text and "new EventSource" not in done.text
    assert "&#34;rows&#34;: 3" in done.text
    missing = await dash.get("/dashboard/jobs/never-heard-of")
    assert missing.status_code == 404 and "No status for job" in missing.text
    assert (await dash.get("/dashboard/jobs", params={"id": "x" * 600})).status_code == 400
    assert 'id="job-lookup"' in (await dash.get("/dashboard/jobs")).text


async def test_bad_peek_limit_is_a_400_page(dash):
    for limit in ("0", "abc", "1001"):
        assert (await dash.get("/dashboard/queues/work", params={"limit": limit})).status_code == 400
    assert (await dash.get("/dashboard/queues/work", params={"limit": "5"})).status_code == 200


# -- behind [http] internal_token ----------------------------------------------------------


async def test_behind_the_token_a_browser_is_led_to_the_login_form(guarded):
    page = await guarded.get("/dashboard", headers=HTML)
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert 'href="/dashboard/login"' in page.text
    api = await guarded.get("/dashboard/queues/work")
    assert api.status_code == 401 and api.json()["type"] == "Unauthorized"
    form = await guarded.get("/dashboard/login", headers=HTML)
    assert form.status_code == 200 and 'type="password" name="token"' in form.text


async def test_the_login_form_sets_a_session_cookie_that_opens_the_dashboard_only(guarded):
    wrong = await guarded.post("/dashboard/login", data={"token": TOKEN + "x"}, headers=HTML)
    assert wrong.status_code == 401 and "not the internal token" in wrong.text
    assert "set-cookie" not in wrong.headers
    login = await guarded.post("/dashboard/login", data={"token": TOKEN})
    assert login.status_code == 303 and login.headers["location"] == "/dashboard"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("roost_session=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = await guarded.get("/dashboard")
    assert page.status_code == 200 and 'id="queues"' in page.text
    assert "open to anyone" not in page.text and "Log out" in page.text
    assert (await guarded.get("/queues")).status_code == 401  # the cookie is no bearer token
    assert (await guarded.post("/rpc/X/y/z")).status_code == 401
    logout = await guarded.post("/dashboard/logout")
    assert logout.status_code == 303 and "Max-Age=0" in logout.headers["set-cookie"]
    assert (await guarded.get("/dashboard", headers=HTML)).status_code == 401


async def test_a_forged_session_cookie_opens_nothing(guarded):
    guarded.cookies.set("roost_session", "0" * 64)
    assert (await guarded.get("/dashboard", headers=HTML)).status_code == 401
    guarded.cookies.set("roost_session", TOKEN)
    assert (await guarded.get("/dashboard", headers=HTML)).status_code == 401


async def test_the_bearer_token_opens_the_dashboard_too(guarded):
    page = await guarded.get("/dashboard", headers={"authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200


async def test_logged_in_a_post_still_needs_the_csrf_token(guarded):
    await guarded.rt.queue("work").send({"n": 1})
    await guarded.post("/dashboard/login", data={"token": TOKEN})
    await guarded.get("/dashboard")
    refused = await guarded.post("/dashboard/queues/work/act", data={"action": "purge"})
    assert refused.status_code == 403
    assert (await guarded.rt.queue("work").metrics())["backlog"] == 1


async def test_without_a_token_the_login_page_says_the_dashboard_is_open(dash):
    page = await dash.get("/dashboard/login")
    assert page.status_code == 200 and "open to anyone" in page.text and 'name="token"' not in page.text
    posted = await dash.post("/dashboard/login", data={"token": "anything"})
    assert posted.status_code == 303 and posted.headers["location"] == "/dashboard"
