"""NATS that asks clients for a user and password: Roost connects with them in its URLs, is
refused with a wrong one, and never shows the password in what it reports."""

from __future__ import annotations

import pytest

from runtime.cluster.jetstream import NatsUnavailable, open_jetstream
from runtime.cluster.local_nats import open_cluster
from runtime.cluster.options import shown

USER, PASSWORD = "roost", "s3cret-pw"


@pytest.fixture(scope="module")
def secured(nats_cluster):  # nats_cluster: skipped the same way without a nats-server
    with open_cluster(3, user=f"{USER}:{PASSWORD}") as cluster:
        yield cluster


def with_user(urls: list[str], userinfo: str) -> list[str]:
    return [url.replace("nats://", f"nats://{userinfo}@") for url in urls]


def test_shown_hides_the_user_and_password_of_every_url():
    urls = ["nats://roost:pw@10.0.0.1:4222", "nats://10.0.0.2:4222", "tls://token@10.0.0.3:4222"]
    assert shown(urls) == "nats://***@10.0.0.1:4222,nats://10.0.0.2:4222,tls://***@10.0.0.3:4222"


async def test_the_user_and_password_in_the_urls_open_the_log(secured):
    async with open_jetstream(with_user(secured.urls, f"{USER}:{PASSWORD}"), timeout_seconds=2.0) as js:
        sequence = await js.append(1, b"x", expected=0, msg_id="1:1:1")
        assert await js.read(1, 0) == [(sequence, b"x")]


async def test_a_wrong_password_is_refused_and_not_shown(secured):
    with pytest.raises(NatsUnavailable) as caught:
        async with open_jetstream(with_user(secured.urls, f"{USER}:wrong-pw"), timeout_seconds=1.0):
            pass
    message = str(caught.value)
    assert "wrong-pw" not in message and "***@127.0.0.1" in message, message
