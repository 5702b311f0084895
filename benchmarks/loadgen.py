"""An open-loop load generator for /predict: a fixed request rate, every answer recorded.

Open loop on purpose: request i is due at `start + i / rate` whatever happened to the
ones before, and its latency is counted from when it was due, so a server that stalls
(say, while loading a new version) shows the stall in the latency instead of quietly
receiving fewer requests (the "coordinated omission" of closed-loop clients such as wrk).

Run as a process, pinned to its own CPU by the caller:
    python -m benchmarks.loadgen URL RATE OUT_FILE
It runs until SIGTERM, lets the requests in flight finish, then writes one JSON line
per request to OUT_FILE:
`[due (time.monotonic, comparable across processes on Linux), latency s, status, version]`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
CONNECTIONS = 32
Record = tuple[float, float, str, str | None]


class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand: an HTTP client library costs
    ~1 ms of CPU per request, which on a shared core caps the generator below 200/s."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> tuple[str, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _worker(
    connection: Connection, due_times: asyncio.Queue[float | None], out: list[Record]
) -> None:
    while (due := await due_times.get()) is not None:
        try:
            status, body = await asyncio.wait_for(connection.post(), timeout=10)
            version = str(json.loads(body)["model"]["version"]) if status == "200" else None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            connection.close()
            status, version = type(exc).__name__, None
        out.append((due, time.monotonic() - due, status, version))
    connection.close()


async def run(url: str, rate: float) -> list[Record]:
    """Offer `rate` requests/s until SIGTERM; at most CONNECTIONS are in flight, and a
    request that waits for a free connection has that wait in its latency."""
    parts = urlsplit(url)
    records: list[Record] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    due_times: asyncio.Queue[float | None] = asyncio.Queue()
    workers = [
        asyncio.create_task(
            _worker(
                Connection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path),
                due_times,
                records,
            )
        )
        for _ in range(CONNECTIONS)
    ]
    start = time.monotonic()
    i = 0
    while not stop.is_set():
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        due_times.put_nowait(due)
        i += 1
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.gather(*workers)
    return records


def main() -> None:
    url, rate, out_file = sys.argv[1:4]
    records = asyncio.run(run(url, float(rate)))
    Path(out_file).write_text("\n".join(json.dumps(r) for r in records) + "\n")


if __name__ == "__main__":
    main()
