"""sync_with_server: a subscription made on a fresh connection hears the very next message
another connection publishes. With one plain ``flush()``, 3 to 6 in a hundred such messages
found no subscriber (nats-py 2.16, nats-server 2.15), so 150 rounds all but surely catch a
regression."""

from __future__ import annotations

import nats

from authbus.infra.nats.nats_server import NatsServer
from authbus.infra.nats.sync import sync_with_server


async def test_a_subscription_is_held_by_the_server_once_synced(nats_server: NatsServer):
    publisher = await nats.connect(nats_server.url)
    try:
        for round in range(150):
            listener = await nats.connect(nats_server.url)
            try:
                subscription = await listener.subscribe(f"sync.{round}")
                await sync_with_server(listener)
                await publisher.publish(f"sync.{round}", b"heard")
                assert (await subscription.next_msg(timeout=5)).data == b"heard", round
            finally:
                await listener.close()
    finally:
        await publisher.close()
