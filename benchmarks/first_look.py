"""First look: how long the demo agent's run takes in `make run`'s embedded mode, the first one included.

Starts what `make run` starts (SQLite and the file-system broker in a fresh FALCON_VAR_DIR; the web
server and a threads-pool worker), seeds the demo tenant, then asks for the demo agent's run with
`wait_s` through the API, as the printed curl does: the first run after start, then ten more. Prints
the wall time of each (goal: ≤ 300 ms, the first included). Not a test.

    make bench   (or: python -m benchmarks.first_look)
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP = ("PATH", "HOME", "LANG", "TMPDIR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _post(url: str, key: str, body: dict[str, object]) -> tuple[float, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, payload


def main() -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="falcon-first-look-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k in KEEP}
    env.update(FALCON_VAR_DIR=str(var_dir), FALCON_BASE_URL=f"http://127.0.0.1:{port}")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    key = json.loads((var_dir / "demo-credentials.json").read_text())["api_key"]
    worker_log = var_dir / "worker.log"
    processes = [
        subprocess.Popen(
            [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [python, "-m", "celery", "-A", "falcon", "worker", "--pool=threads", "--concurrency=4",
             "--loglevel=INFO"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=worker_log.open("wb"),
        ),
    ]  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz")
        deadline = time.monotonic() + 60  # as a person would: the product is up once the worker says so
        while b" ready." not in worker_log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        request = urllib.request.Request(f"{base}/api/v1/agents/", headers={"Authorization": f"Bearer {key}"})
        agents = json.loads(urllib.request.urlopen(request, timeout=30).read())["results"]
        agent = next(a for a in agents if a["name"] == "hello")
        url = f"{base}/api/v1/agents/{agent['id']}/runs"
        timings = []
        for n in range(11):
            ms, run = _post(url, key, {"input": {"name": f"Ada {n}"}, "wait_s": 30})
            assert run["status"] == "succeeded", run
            timings.append(ms)
        print("first look (make run: SQLite, file-system broker, runserver, threads worker)")
        print(f"  first demo run after start: {timings[0]:7.0f} ms")
        print(f"  next ten: median {statistics.median(timings[1:]):.0f} ms, max {max(timings[1:]):.0f} ms")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
