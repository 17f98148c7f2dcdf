"""A TCP proxy in the middle, for fault tests: cut every connection, or delay every byte.

``Proxy(port)`` listens on a free loopback port and forwards each connection to
``127.0.0.1:port``; it runs an asyncio loop in a daemon thread of its own, so a synchronous
test drives it. :meth:`Proxy.cut` closes every open connection at once (both sides see a reset
or an EOF, as when a router or a load balancer drops them); :meth:`Proxy.refuse` also closes
new ones at once until :meth:`Proxy.heal`; :meth:`Proxy.delay` holds every chunk that much
before forwarding it, in both directions, in order (a slow network: a command may reach the
server after its client timed out). Standard library only::

    with Proxy(6379) as proxy:          # clients use proxy.url
        proxy.delay(0.8); ...; proxy.heal()
        proxy.cut()

``python -m tools.proxy TARGET_PORT`` runs one in the foreground and prints its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

__all__ = ["Proxy"]

HOST = "127.0.0.1"
CHUNK = 65536


class Proxy:
    """Forward ``127.0.0.1:<port>`` (``self.port``, chosen free) to ``127.0.0.1:target``."""

    def __init__(self, target: int, host: str = HOST) -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self.cuts = 0  # connections closed by cut() or refuse()
        self._delay = 0.0
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"proxy->{target}")
        self._thread.start()
        self._call(self._listen())

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: a Redis URL through the proxy."""
        return f"redis://{self.host}:{self.port}/0"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    # -- controls (any thread) ---------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it (0: forward at once)."""
        self._delay = max(0.0, seconds)

    def cut(self) -> int:
        """Close every open connection now (new ones are still accepted); returns how many."""
        return self._call(self._cut())

    def refuse(self) -> None:
        """Cut every connection and close each new one at once, until :meth:`heal`."""
        self._refusing = True
        self.cut()

    def heal(self) -> None:
        """No delay, no refusal: forward as usual (connections cut stay cut)."""
        self._delay = 0.0
        self._refusing = False

    def close(self) -> None:
        """Stop listening, cut everything and stop the thread. Idempotent."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the loop's side ---------------------------------------------------------------------

    async def _cut(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            _abort(writer)
        self._writers.difference_update(writers)
        self.cuts += len(writers) // 2
        return len(writers) // 2

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            self.cuts += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target)
        except OSError:
            _abort(writer)
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for end in pair:
                _abort(end)
            self._writers -= pair

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until EOF or an error; then close the other side too (half-close not kept)."""
        try:
            while chunk := await reader.read(CHUNK):
                if self._delay:
                    await asyncio.sleep(self._delay)
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once, without waiting for buffered data (a reset, not a FIN)."""
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()


def main(argv: list[str]) -> int:
    """``python -m tools.proxy TARGET_PORT``: run until interrupted."""
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m tools.proxy TARGET_PORT", file=sys.stderr)
        return 2
    with Proxy(int(argv[0])) as proxy:
        print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{proxy.target}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
