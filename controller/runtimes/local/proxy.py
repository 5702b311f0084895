"""The stable address of a local deployment: a small TCP proxy on the manifest's `port`.

A local deployment is served on `127.0.0.1:<spec.port>` for good, yet a recreate is blue/
green: the new server must answer /readyz before the old one stops, and two processes
cannot simply share one address. Two ways were weighed:

- `SO_REUSEPORT`, old and new server listening on the port at once. When the old server
  then closes its socket, Linux resets the connections already queued on it (unless
  `net.ipv4.tcp_migrate_req` is set, which it is not by default), and uvicorn closes idle
  keep-alive connections as it shuts down, so a client that sends its next request on one
  at that moment gets "server disconnected without a response". Under load a recreate
  loses requests either way, and a health check cannot pick which server it reaches.
- This proxy, which the runtime starts beside the servers. It owns the client
  connections, so a server going away never reaches a client: the runtime points the
  proxy at the new server (one assignment, acknowledged) before it stops the old one; a
  client connection whose server closed is connected to the current server on its next
  request; and a request the old server closed *without sending a byte of its answer*
  (an idle close racing the request, a reset from its accept queue) is sent again to the
  current server. That replay is safe because uvicorn finishes every request it has
  started before it exits, so such a request never ran (only a server that crashes
  mid-request runs one twice, and `/predict` has no side effects).

The proxy is its own process in its own session, like the model servers, so deployments
keep serving when the controller stops, and a restarted controller adopts it from the
state file. It gets its listening socket already bound (the runtime binds the port, so a
busy port is the controller's clear error, not a proxy that died on start) and is told
where to forward over an abstract Unix socket that only the same user may use. Hot swaps
do not involve it: the server swaps the model in place behind the same connection.

Standard library only (plus uvloop when installed): it starts fast and carries nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import cast

from controller.runtimes.local.frontdoor import HOST, control_address

# A request bigger than this is forwarded but not kept for a replay.
MAX_REPLAY_BYTES = 4 * 1024 * 1024
# How often one request may be sent again after its server closed without answering.
MAX_REPLAYS = 3
# Flow control: stop reading one side while the other side's write buffer is this full.
HIGH_WATER = 256 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0


class Router:
    """Where new backend connections go, and every client connection, for draining."""

    def __init__(self, backend_port: int) -> None:
        self.port = backend_port
        self.clients: set[ClientSide] = set()


class BackendSide(asyncio.Protocol):
    def __init__(self, client: ClientSide, port: int) -> None:
        self.client = client
        self.port = port
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        _no_delay(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.client.answered(data)

    def eof_received(self) -> bool:
        return False  # close; connection_lost tells the client side

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.backend_lost(self)

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()


class ClientSide(asyncio.Protocol):
    """One client connection; its server connection comes and goes underneath it."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.backend: BackendSide | None = None
        self.connecting = False
        # Bytes sent since the server last answered: what a replay sends again.
        self.unanswered = bytearray()
        self.replayable = True
        self.replays = 0
        # Bytes waiting for a server connection to open.
        self.waiting = bytearray()
        self.eof = False

    # -- the client ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        _no_delay(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.replayable:
            self.unanswered += data
            if len(self.unanswered) > MAX_REPLAY_BYTES:
                self.replayable = False
                self.unanswered.clear()
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.write(data)
            return
        self.waiting += data
        if not self.connecting:
            self._connect()

    def eof_received(self) -> bool:
        self.eof = True
        backend = self.backend
        if backend is not None and backend.transport is not None:
            if backend.transport.can_write_eof():
                backend.transport.write_eof()
            return True  # half-open: the answer may still be on its way
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.router.clients.discard(self)
        backend, self.backend = self.backend, None
        if backend is not None and backend.transport is not None:
            backend.transport.close()

    def pause_writing(self) -> None:
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.pause_reading()

    def resume_writing(self) -> None:
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def idle(self) -> bool:
        return not self.unanswered and not self.waiting and not self.connecting

    # -- the server ---------------------------------------------------------------------

    def answered(self, data: bytes) -> None:
        self.unanswered.clear()
        self.replayable = True
        self.replays = 0
        if self.transport is not None:
            self.transport.write(data)

    def backend_lost(self, backend: BackendSide) -> None:
        if backend is not self.backend:
            return
        self.backend = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.unanswered:
            self._replay()
        elif backend.port != self.router.port and not self.eof:
            pass  # a retired server said goodbye: the next request goes to the current one
        else:
            self.transport.close()  # the current server closed: the client sees the same

    def _replay(self) -> None:
        if not self.replayable or self.replays >= MAX_REPLAYS:
            self._fail()
            return
        self.replays += 1
        self.waiting = bytearray(self.unanswered)
        self._connect()

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _connect(self) -> None:
        self.connecting = True
        asyncio.get_running_loop().create_task(self._open(self.router.port))

    async def _open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, backend = await loop.create_connection(lambda: BackendSide(self, port), HOST, port)
        except OSError:
            self.connecting = False
            if self.router.port != port and self.replays < MAX_REPLAYS:
                self.replays += 1
                self._connect()  # the route moved while this connect was under way
            else:
                self._fail()
            return
        self.connecting = False
        if self.transport is None or self.transport.is_closing():
            if backend.transport is not None:
                backend.transport.close()
            return
        self.backend = backend
        assert backend.transport is not None
        backend.transport.write(bytes(self.waiting))
        self.waiting.clear()
        if self.eof and backend.transport.can_write_eof():
            backend.transport.write_eof()


def _no_delay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Control(asyncio.Protocol):
    """`route <port>` → `ok <port>`; `status` → one JSON line. Same user only."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", credentials)
        if uid != os.getuid():
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 1024:
            self._answer("error: request too long")
            return
        if b"\n" in self.buffer:
            line = self.buffer.split(b"\n", 1)[0].decode(errors="replace").split()
            self._answer(self._handle(line))

    def _handle(self, words: list[str]) -> str:
        if len(words) == 2 and words[0] == "route" and words[1].isdigit():
            self.router.port = int(words[1])
            return f"ok {self.router.port}"
        if words == ["status"]:
            return json.dumps({"route": self.router.port, "clients": len(self.router.clients)})
        return "error: expected `route <port>` or `status`"

    def _answer(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(text.encode() + b"\n")
            self.transport.close()


async def serve(listener: socket.socket, backend_port: int, control_id: str) -> None:
    loop = asyncio.get_running_loop()
    router = Router(backend_port)
    server = await loop.create_server(lambda: ClientSide(router), sock=listener, backlog=1024)
    control = await loop.create_unix_server(
        lambda: Control(router), path=control_address(control_id)
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    control.close()
    # Let answers under way finish; idle connections just close.
    deadline = loop.time() + SHUTDOWN_GRACE_SECONDS
    while loop.time() < deadline:
        for client in list(router.clients):
            if client.idle and client.transport is not None:
                client.transport.close()
        if not router.clients:
            break
        await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", required=True, help="deployment name (for people)")
    parser.add_argument("--port", type=int, required=True, help="the stable port (for people)")
    parser.add_argument("--listen-fd", type=int, required=True, help="bound listening socket")
    parser.add_argument("--backend", type=int, required=True, help="first server port")
    parser.add_argument("--control", required=True, help="control socket id")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.listen_fd)
    listener.setblocking(False)
    try:
        import uvloop  # optional: the event loop uvicorn[standard] uses too
    except ImportError:
        asyncio.run(serve(listener, args.backend, args.control))
    else:
        uvloop.run(serve(listener, args.backend, args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
