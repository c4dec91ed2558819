"""A NATS connection (nats-py) on its own asyncio thread, usable from plain threads.

The kill role and `KillSubscriber` are threaded; nats-py is asyncio. `NatsLink` runs one event
loop in a daemon thread, connects (and keeps reconnecting: the kill switch must come back by
itself when nats-server does), and offers thread-safe `publish` and `subscribe`. Callbacks run on
the link's loop thread and must not block. `connected` says whether the server is reachable now;
publishes while disconnected return False and are counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from tectra.core.log import get_logger

__all__ = ["MessageHandler", "NatsLink", "NatsUnavailableError"]

MessageHandler = Callable[[str, bytes], None]


class NatsUnavailableError(RuntimeError):
    """The server could not be reached within the start timeout."""


class NatsLink:
    def __init__(self, url: str, name: str, *, reconnect_wait_s: float = 0.25) -> None:
        self.url = url
        self.name = name
        self._reconnect_wait_s = reconnect_wait_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._nc: Any = None
        self._connected = threading.Event()
        self._stopping = False
        self._subs: list[tuple[str, MessageHandler]] = []
        self.published = 0
        self.publish_failures = 0
        self.reconnects = 0
        self.last_error = ""
        self._log = get_logger("kill.nats").bind(url=url, name=name)

    # -- lifetime --------------------------------------------------------------------------
    def start(self, wait_s: float = 2.0) -> bool:
        """Start the loop and connect; True when connected within WAIT_S (else it keeps trying
        in the background and `connected` turns true later)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect_forever(), self._loop)
        return self._connected.wait(wait_s)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _connect_forever(self) -> None:
        import nats

        while not self._stopping:
            try:
                self._nc = await nats.connect(
                    self.url,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self._reconnect_wait_s,
                    connect_timeout=1,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    error_cb=self._on_error,
                )
            except Exception as exc:  # nats-py raises several unrelated types on connect
                self.last_error = repr(exc)
                await asyncio.sleep(self._reconnect_wait_s)
                continue
            for subject, handler in self._subs:
                await self._subscribe(subject, handler)
            self._connected.set()
            self._log.info("nats connected")
            return

    async def _on_disconnect(self) -> None:
        self._connected.clear()

    async def _on_reconnect(self) -> None:
        self.reconnects += 1
        self._connected.set()

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = repr(exc)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=2.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=2.0)
        if not self._loop.is_running():
            self._loop.close()

    async def _drain(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._connected.clear()

    # -- messaging -------------------------------------------------------------------------
    def subscribe(self, subject: str, handler: MessageHandler) -> None:
        """HANDLER(subject, data) for every message on SUBJECT, on the loop thread; kept across
        reconnects (nats-py resubscribes) and applied when a later connect succeeds."""
        self._subs.append((subject, handler))
        if self._nc is not None and self.connected:
            fut = asyncio.run_coroutine_threadsafe(self._subscribe(subject, handler), self._loop)
            fut.result(timeout=2.0)

    async def _subscribe(self, subject: str, handler: MessageHandler) -> None:
        async def cb(msg: Any) -> None:
            handler(msg.subject, msg.data)

        await self._nc.subscribe(subject, cb=cb)
        await self._nc.flush(timeout=2)

    def publish(self, subject: str, data: bytes) -> bool:
        """Queue DATA on SUBJECT from any thread; False when not connected."""
        if not self.connected or self._nc is None:
            self.publish_failures += 1
            return False
        self._loop.call_soon_threadsafe(self._publish_now, subject, data)
        return True

    def publish_in_loop(self, subject: str, data: bytes) -> bool:
        """Publish from a handler already running on the loop thread."""
        if not self.connected or self._nc is None:
            self.publish_failures += 1
            return False
        self._publish_now(subject, data)
        return True

    def _publish_now(self, subject: str, data: bytes) -> None:
        self._loop.create_task(self._publish(subject, data))

    async def _publish(self, subject: str, data: bytes) -> None:
        try:
            await self._nc.publish(subject, data)
            self.published += 1
        except Exception as exc:  # connection lost mid-publish: counted, the engine retries
            self.publish_failures += 1
            self.last_error = repr(exc)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run FN on the loop thread after DELAY_S (thread-safe)."""
        self._loop.call_soon_threadsafe(self._loop.call_later, delay_s, fn)
