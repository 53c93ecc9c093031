"""The shop example end to end over HTTP, as `make run` serves it (examples/roost.toml)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest
import trio

import runtime
from actors import list_jobs
from examples import shop
from runtime import load_config, open_runtime

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "roost.toml"


@pytest.fixture
async def http(data_dir):
    shop.PROVIDER.random.seed(7)
    shop.PROVIDER.charges.clear()
    async with open_runtime(load_config(CONFIG), data_dir=data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            client.rt = rt
            yield client


async def test_an_order_is_answered_at_once_and_paid_in_the_background(http, autojump_clock):
    created = await http.post("/orders", json={"amount": 4200, "id": "order-1"})
    assert created.status_code == 202
    assert created.json()["status"] == "processing" and created.json()["order"]["amount"] == 4200
    assert (await http.get("/jobs/order-1/status")).json()["status"] in ("pending", "processing")
    await trio.sleep(30)
    order = (await http.get("/orders/order-1")).json()["order"]
    assert order["status"] == "paid" and order["charge_id"] == "ch_order-1"
    status = (await http.get("/jobs/order-1/status")).json()
    assert status["status"] == "completed" and status["progress"] == 100
    assert shop.PROVIDER.charges == {"order-1": 4200}  # charged once
    again = await http.post("/orders", json={"amount": 4200, "id": "order-1"})
    assert again.json()["status"] == "paid"  # creating it again changes nothing
    [reminder] = await list_jobs(http.rt.env)
    assert reminder["job"] == {"order_id": "order-1", "kind": "reminder"} and reminder["queue"] == "reminders"


async def test_many_orders_are_each_charged_exactly_once(http, autojump_clock):
    answers = []

    async def order(i: int) -> None:
        answers.append((await http.post("/orders", json={"amount": 1000 + i, "id": f"o{i}"})).status_code)

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(order, i)
    assert answers == [202] * 30
    await trio.sleep(120)
    assert shop.PROVIDER.charges == {f"o{i}": 1000 + i for i in range(30) if (1000 + i) % 13}
    assert (await http.get("/queues/external-api-queue")).json()["backlog"] == 0
    declined = [i for i in range(30) if (1000 + i) % 13 == 0]
    assert (await http.get("/queues/external-api-dlq")).json()["backlog"] == len(declined)


async def test_a_declined_payment_lands_in_the_dead_letter_queue_and_can_be_redriven(http, autojump_clock):
    assert (await http.post("/orders", json={"amount": 1300, "id": "bad"})).status_code == 202
    await trio.sleep(60)
    order = (await http.get("/orders/bad")).json()["order"]
    assert order["status"] == "payment_failed" and "declined" in order["error"]
    assert (await http.get("/jobs/bad/status")).json()["status"] == "failed"
    dead = (await http.get("/queues/external-api-dlq/messages")).json()["messages"]
    assert [m["body"]["order_id"] for m in dead] == ["bad"]
    assert dead[0]["dead_letter"]["attempts"] == 4
    assert (await http.post("/queues/external-api-dlq/redrive", json={})).json() == {"moved": 1}
    assert (await http.get("/queues/external-api-dlq")).json()["backlog"] == 0
    await trio.sleep(60)  # declined again: back in the dead-letter queue
    assert (await http.get("/queues/external-api-dlq")).json()["backlog"] == 1


async def test_a_signed_webhook_refunds_the_order(http, autojump_clock):
    await http.post("/orders", json={"amount": 500, "id": "order-9"})
    await trio.sleep(30)
    event = json.dumps({"id": "evt_9", "type": "charge.refunded", "data": {"order_id": "order-9"}}).encode()
    t = int(runtime.now())
    signature = hmac.new(b"whsec_example_only", f"{t}.".encode() + event, hashlib.sha256).hexdigest()
    answer = await http.post(
        "/webhooks/stripe", content=event, headers={"stripe-signature": f"t={t},v1={signature}"}
    )
    assert answer.json() == {"received": True}
    await trio.sleep(5)
    assert (await http.get("/orders/order-9")).json()["order"]["status"] == "refunded"


async def test_bad_orders_are_refused(http, autojump_clock):
    for body in ({"amount": -5}, {"amount": "ten"}, {"cost": 1}, {"amount": 5, "id": 7}):
        assert (await http.post("/orders", json=body)).status_code == 400
    assert (await http.get("/orders/never")).status_code == 404
    assert (await http.delete("/orders")).status_code == 404


async def test_an_order_without_an_id_gets_one(http, autojump_clock):
    created = (await http.post("/orders", json={"amount": 900})).json()
    order_id = created["order"]["id"]
    assert order_id.startswith("order-")
    await trio.sleep(30)
    assert (await http.get(f"/orders/{order_id}")).json()["order"]["status"] == "paid"
