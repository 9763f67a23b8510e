"""Notification channels post only to hosts in DULY_OUTBOUND_HOSTS, as the webhook action does."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support import posted_paths

from duly.notify.channels import ChannelContext, DeliveryError, send
from duly.notify.outbox import Outgoing
from duly.settings import Settings


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 recording the paths posted to it."""
    with posted_paths() as receiving:
        yield receiving


def delivery(channel: str, target: str) -> Outgoing:
    return Outgoing(
        id=1,
        key="alert-1/maria/" + channel,
        user_id="maria",
        channel=channel,
        kind="alert.breach",
        subject="Breach",
        body="A task ran late",
        payload={"text": "A task ran late"},
        attempt=1,
        target=target,
    )


@pytest.mark.parametrize("channel", ["slack", "webhook"])
async def test_a_channel_to_a_host_outside_the_list_is_refused_before_connecting(
    channel: str, receiver: tuple[str, list[str]]
) -> None:
    url, paths = receiver
    settings = Settings(outbound_hosts="hooks.slack.com")
    async with httpx.AsyncClient() as http:
        context = ChannelContext(settings, http, timeout=5.0)
        with pytest.raises(DeliveryError, match="not in DULY_OUTBOUND_HOSTS"):
            await send(delivery(channel, f"{url}/hook"), context)
    assert paths == []


@pytest.mark.parametrize("channel", ["slack", "webhook"])
async def test_a_channel_to_a_listed_host_is_posted_to(
    channel: str, receiver: tuple[str, list[str]]
) -> None:
    url, paths = receiver
    settings = Settings(outbound_hosts="hooks.slack.com, 127.0.0.1")
    async with httpx.AsyncClient() as http:
        context = ChannelContext(settings, http, timeout=5.0)
        await send(delivery(channel, f"{url}/hook"), context)
    assert paths == ["/hook"]
