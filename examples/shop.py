"""The shop example: orders answered at once, payments charged in the background.

``POST /orders`` with ``{"amount": cents}`` stores the order, enqueues its payment and
answers ``{"order": ..., "status": "processing"}`` at once. The payment consumer
charges a fake provider (it fails transiently some of the time, and declines amounts that
are multiples of 13 for good) through ``execute_idempotent`` keyed by the order id, so no
order is charged twice, with ``with_backoff`` for the transient failures; it keeps the
order's job status, and declined payments end in the dead-letter queue. A Stripe-style
webhook marks orders refunded, and a reminder is scheduled for every order.
"""

from __future__ import annotations

import logging
import random
import uuid
from functools import partial

import runtime
from actors import (
    MessageBatch,
    PermanentError,
    execute_idempotent,
    schedule_job,
    update_job_status,
    with_backoff,
)
from runtime import Actor, Request, Response

log = logging.getLogger("examples.shop")

REMINDER_DELAY_SECONDS = 3600


class PaymentDeclined(PermanentError):
    status_code = 402


class ProviderUnavailable(Exception):
    status_code = 503


class FakePaymentProvider:
    """Stands in for a payment API: slow to answer, sometimes down, and it declines some
    cards for good (amounts that are multiples of 13)."""

    def __init__(self, failure_rate: float = 0.3, seed: int | None = None) -> None:
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.charges: dict[str, int] = {}

    async def charge(self, order_id: str, amount: int) -> dict:
        if amount % 13 == 0:
            raise PaymentDeclined(f"card declined for order {order_id}")
        if self.random.random() < self.failure_rate:
            raise ProviderUnavailable("payment provider unavailable, try again")
        self.charges[order_id] = self.charges.get(order_id, 0) + amount
        return {"charge_id": f"ch_{order_id}", "amount": amount}


PROVIDER = FakePaymentProvider()


class Shop(Actor):
    """The shop's front door, ``[[routes]]`` path ``/orders``: ``POST /orders`` and
    ``GET /orders/{id}``."""

    async def fetch(self, request: Request) -> Response:
        parts = [part for part in request.path.split("/") if part]
        if request.method == "POST" and parts == ["orders"]:
            return await self._create(request)
        if request.method == "GET" and len(parts) == 2 and parts[0] == "orders":
            order = await self.env.ORDERS.get_by_name(parts[1]).get()
            if order is None:
                return Response({"error": "Order not found", "type": "NotFound"}, 404)
            return Response({"order": order})
        return Response({"error": f"no route for {request.method} {request.path}", "type": "NotFound"}, 404)

    async def _create(self, request: Request) -> Response:
        try:
            payload = request.json()
            amount = payload["amount"]
        except (ValueError, KeyError, TypeError):
            return Response(
                {"error": 'the body must be {"amount": cents, "id"?: str}', "type": "BadRequest"}, 400
            )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return Response({"error": "amount must be a positive integer (cents)", "type": "BadRequest"}, 400)
        # A client-chosen id makes creating an order idempotent; otherwise one is made.
        order_id = payload.get("id") or f"order-{uuid.uuid4().hex[:12]}"
        if not isinstance(order_id, str):
            return Response({"error": "id must be a string", "type": "BadRequest"}, 400)
        order = await self.env.ORDERS.get_by_name(order_id).create(amount)
        return Response({"order": order, "status": order["status"]}, 202)


class Order(Actor):
    """One order; its id is the actor's name."""

    async def create(self, amount: int) -> dict:
        """Store the order, enqueue its payment, schedule its reminder; once per order."""
        existing = await self.storage.get("order")
        if existing is not None:
            return existing
        order = {"id": self.id.name, "amount": amount, "status": "processing", "created_at": runtime.now()}
        await self.storage.put("order", order)
        await update_job_status(self.env, self.id.name, status="pending", progress=0)
        await self.env.EXTERNAL_API_QUEUE.send(
            {"action": "process_payment", "order_id": self.id.name, "amount": amount}
        )
        await schedule_job(
            self.env,
            {"order_id": self.id.name, "kind": "reminder"},
            runtime.now() + REMINDER_DELAY_SECONDS,
            queue="reminders",
        )
        return order

    async def get(self) -> dict | None:
        return await self.storage.get("order")

    async def mark(self, status: str, details: dict | None = None) -> dict:
        order = await self.storage.get("order")
        order.update(status=status, **(details or {}))
        await self.storage.put("order", order)
        return order


class ExternalApiConsumer(Actor):
    """Charges each order's payment, at most once, retrying transient failures."""

    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            order_id, amount = message.body["order_id"], message.body["amount"]
            await update_job_status(self.env, order_id, status="processing", progress=50)

            try:
                outcome = await execute_idempotent(
                    self.env, f"charge:{order_id}", partial(_charge, order_id, amount)
                )
            except Exception as exc:
                log.warning("payment of order %s failed (attempt %d): %s", order_id, message.attempts, exc)
                await update_job_status(self.env, order_id, status="failed", error=str(exc))
                await self.env.ORDERS.get_by_name(order_id).mark("payment_failed", {"error": str(exc)})
                message.retry()
                continue
            await self.env.ORDERS.get_by_name(order_id).mark("paid", outcome.result)
            await update_job_status(
                self.env, order_id, status="completed", progress=100, result=outcome.result
            )
            message.ack()


async def _charge(order_id: str, amount: int) -> dict:
    """One charge, with transient failures retried; a decline is permanent and not retried."""
    return await with_backoff(partial(PROVIDER.charge, order_id, amount), max_retries=3, base_delay=0.2)


class StripeEventsConsumer(Actor):
    """Applies verified webhook events to their orders."""

    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            event = message.body
            order_id = event.get("data", {}).get("order_id")
            if event.get("type") == "charge.refunded" and order_id:
                await self.env.ORDERS.get_by_name(order_id).mark("refunded", {"refund_event": event["id"]})


class ReminderConsumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            log.info("reminder for order %s", message.body["order_id"])
