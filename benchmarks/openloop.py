"""An open-loop HTTP load: requests sent at a fixed rate over a fixed number of kept-alive
connections, whatever the server's answers take, each request's latency counted from the moment it
was *due* (as wrk2 does; Debian packages no wrk2).

``wrk`` is a closed loop: each of its connections sends its next request when the previous answer
arrives, so at 32 connections the mean latency is 32 / throughput whatever the server does (Little's
law), and a p99 of 20 ms would need 1600 answers a second. An open loop asks the other question:
at a given rate, how long does one delivery wait? A request due while all connections are busy
waits for one, and that wait is part of its latency (no coordinated omission).

    python -m benchmarks.openloop URL RATE [CONNECTIONS] [SECONDS] [Header:value ...]
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit

from benchmarks.common import percentile


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _load(
    url: str, rate: float, connections: int, seconds: float, headers: dict[str, str], body: str
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = body.encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{head}Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    failures = 0

    async def one(due: float) -> None:
        nonlocal failures
        reader, writer = await idle.get()
        try:
            status = await _exchange(reader, writer, request)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            failures += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        else:
            if status >= 300:
                failures += 1
            latencies.append(time.monotonic() - due)
        idle.put_nowait((reader, writer))

    total = int(rate * seconds)
    start = time.monotonic()
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    while not idle.empty():
        idle.get_nowait()[1].close()
    return {
        "offered": rate,
        "requests": float(len(latencies)),
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies, default=float("nan")) * 1000,
        "errors": float(failures),
        "late_s": max(0.0, elapsed - seconds),
    }


def load(
    url: str, rate: float, connections: int, seconds: float, headers: dict[str, str], body: str
) -> dict[str, float]:
    """Sends ``rate * seconds`` POSTs of ``body`` at ``rate`` per second over ``connections``
    kept-alive connections; returns the answers' rate, latency percentiles in ms (from each
    request's due time), errors (failed exchanges and statuses >= 300) and how long past
    ``seconds`` the last answer came."""
    return asyncio.run(_load(url, rate, connections, seconds, headers, body))


def main() -> None:
    url, rate = sys.argv[1], float(sys.argv[2])
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10
    headers = dict(h.split(":", 1) for h in sys.argv[5:])
    result = load(url, rate, connections, seconds, {k: v.strip() for k, v in headers.items()}, "{}")
    print(" ".join(f"{k}={v:.1f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
