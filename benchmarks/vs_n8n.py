"""Run throughput side by side with n8n: the same webhook workflows, the same fake LLM, the same
machine, interleaved level by level, driven by ``wrk``.

  A  webhook -> 3 trivial steps -> respond       (n8n: Webhook -> Set -> Code -> Respond to Webhook)
  B  webhook -> one LLM call (50 ms) -> respond  (n8n: Webhook -> HTTP Request -> Respond to Webhook)

n8n 2.8.4 runs as the anchor installs it (single instance, SQLite, every execution saved), through
``$N8N_BENCH/run.sh`` (default ``/tmp/n8nbench``; copy ``../shared/anchors/n8n`` there; the first
install takes ~4 minutes). Falcon runs as the README's production section says: gunicorn (gthread),
one Celery worker (threads pool), PostgreSQL, and the broker ``CELERY_BROKER_URL`` names (``make bench-n8n``:
RabbitMQ, the production section's broker), with every step of every run logged. Falcon's
modes per workflow:

  inline   A executes inside the webhook request (the default for short pure workflows)
  sync     B's trigger has ``sync_wait_s``: the request answers with the run's output
  queued   202 at once; the figure is runs *completed* per second while the load runs, and the
           backlog (runs not finished) when it stops

Both sides use the same fake OpenAI server (the anchor's ``fake_openai.py``, 50 ms per answer).
Nothing is measured before Falcon's processes are idle (each imports LiteLLM in the background when
it starts). A Falcon row ends with ONE WEB PROCESS IDLE when one gunicorn process served (almost)
nothing at that level: wrk's kept-alive connections all landed on the other process (see decision
0013 §28); the row's figure is then what one process gives.

    python -m benchmarks.vs_n8n [seconds per level] [warm-up seconds]
    env: N8N_BENCH=/tmp/n8nbench  CONCS="1 8 32"  WORKFLOWS="A B"  WEB_WORKERS=2  WEB_THREADS=16
         WORKERS=1  WORKER_THREADS=64  OPEN_LOOP="1 2"

After workflow A's levels (when they include c=32), its queued webhook is also driven by an open
loop (``benchmarks.openloop``: a fixed rate over 32 connections, latency from each request's due
time) at ``OPEN_LOOP`` multiples of n8n's c=32 throughput, n8n itself at 1x: the acceptance
latency at a given load, which wrk's closed loop cannot show (see ``open_loop``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common, openloop
from benchmarks.common import ROOT, cpu_seconds, make_agent, setup_django

FAKE_PORT = 9999
N8N_PORT = 5678
FALCON_PORT = 8766
FALCON_QUEUED_PORT = 8767
BODY = '{"name":"bench","value":21,"items":[1,2,3]}'

THREE_STEPS = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "integer"}}},
    "steps": [
        {"id": "a", "type": "transform", "value": {"name": "{{ input.name }}", "value": "{{ input.value }}"}},
        {"id": "b", "type": "transform", "value": "{{ steps.a.output.value * 2 }}"},
        {"id": "c", "type": "transform", "value": {"result": "{{ steps.b.output + 1 }}"}},
    ],
}
ONE_LLM_CALL = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
    "steps": [
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "Say hi to {{ input.name }}"}
    ],
}

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '@BODY@'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
bad = 0
response = function(status, headers, body) if status >= 300 then bad = bad + 1 end end
done = function(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d rps=%.1f p50=%.1f p99=%.1f errors=%d bad=%d\\n",
    summary.requests, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout, b))
end
""".replace("@BODY@", BODY)


def wrk(url: str, concurrency: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    args = [
        "wrk",
        f"-t{1 if concurrency < 2 else 2}",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--timeout",
        "60s",
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def process_tree(pid: int) -> list[int]:
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [pid, *[p for c in children.split() for p in process_tree(int(c))]]


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(p)
    return total


def wait_http(
    port: int, path: str, *, method: str = "GET", body: str | None = None, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"nothing answered on port {port}")


def start_n8n(bench: Path) -> None:
    if not (bench / "node_modules" / ".bin" / "n8n").exists():
        sys.exit(
            f"n8n is not installed in {bench}: cp -r ../shared/anchors/n8n {bench} && "
            f'WORKFLOWS="" {bench}/run.sh (about 4 minutes), then run this again.'
        )
    subprocess.run(
        [str(bench / "run.sh")],
        env={**os.environ, "BENCH": str(bench), "WORKFLOWS": "", "KEEP": "1"},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def stop_pidfile(path: Path) -> None:
    if path.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(path.read_text().strip()), 15)
        path.unlink()


def broker_name() -> str:
    scheme = os.environ.get("CELERY_BROKER_URL", "").split("://", 1)[0]
    return {"amqp": "RabbitMQ", "pyamqp": "RabbitMQ", "redis": "Redis"}.get(scheme, scheme or "no broker")


def start_falcon(port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    threads = os.environ.get("WEB_THREADS", "16")
    workers = os.environ.get("WEB_WORKERS", "2")
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1,localhost", "FALCON_SSL_REDIRECT": "0", **extra_env}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "falcon.wsgi",
            "--workers",
            workers,
            "--threads",
            threads,
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(port, "/healthz")
    return process


def start_workers(extra_env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """WORKERS worker processes (default 1) of WORKER_THREADS threads each."""
    threads = int(os.environ.get("WORKER_THREADS", "64"))
    return [common.start_worker(threads, extra_env) for _ in range(int(os.environ.get("WORKERS", "1")))]


def webhook(agent: Any, *, sync: bool) -> tuple[str, dict[str, str]]:
    from agents.triggers.services import trigger_create
    from tenants.audit import Actor

    config: dict[str, Any] = {"auth": "header", "header_name": "X-Token", "rate_limit_per_minute": 10_000_000}
    if sync:
        config["sync_wait_s"] = 30
    trigger, secret = trigger_create(
        agent=agent,
        name=f"bench-{time.time_ns()}",
        kind="webhook",
        enabled=True,
        config=config,
        input_mapping={"name": "{{ event.body.name }}", "value": "{{ event.body.value }}"},
        actor=Actor.system("bench"),
        created_by=None,
    )
    assert secret is not None
    return f"/hooks/{trigger.public_id}", {"X-Token": secret}


def falcon_counts(agent: Any, since: Any, until: Any) -> dict[str, int]:
    from agents.models import Run, StepRun

    runs = Run.objects.filter(agent=agent, created_at__gte=since, created_at__lte=until)
    return {
        "created": runs.count(),
        "finished_in_window": Run.objects.filter(agent=agent, finished_at__gte=since, finished_at__lte=until)
        .filter(status="succeeded")
        .count(),
        "unfinished": Run.objects.filter(agent=agent).exclude(status__in=Run.FINISHED).count(),
        "steps": StepRun.objects.filter(run__in=runs).count(),
    }


def drain(agent: Any, timeout: float = 300) -> None:
    from agents.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.filter(agent=agent).exclude(status__in=Run.FINISHED).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the backlog did not drain")
        time.sleep(0.2)


def settle(pids: list[int], timeout: float = 180) -> float:
    """Waits until the processes are idle (each web process and worker imports LiteLLM in the
    background when it starts: seconds of CPU that must not overlap anyone's measurement)."""
    start = time.monotonic()
    last = sum(tree_cpu(p) for p in pids)
    while time.monotonic() - start < timeout:
        time.sleep(1)  # a CPU sample per second: what "idle" is measured over
        now = sum(tree_cpu(p) for p in pids)
        if now - last < 0.05:
            return time.monotonic() - start
        last = now
    raise RuntimeError(f"Falcon's processes were still busy after {timeout:g} s")


def children_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each child of a gunicorn master (its worker processes)."""
    out: dict[int, float] = {}
    for p in process_tree(pid)[1:]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out[p] = cpu_seconds(p)
    return out


def split_note(before: dict[int, float], after: dict[int, float], concurrency: int) -> str:
    """Flags a level where one web process did (almost) nothing: gunicorn's gthread worker keeps a
    kept-alive connection in the process that accepted it, and wrk opens its connections all at
    once, so now and then the kernel hands every one of them to one process while the other idles.
    (With fewer connections than processes, some process must idle: not flagged.)"""
    used = [after.get(p, 0.0) - before[p] for p in before]
    total = sum(used)
    if len(used) < 2 or concurrency < len(used) or total <= 0 or min(used) >= 0.1 * total:
        return ""
    return f"; ONE WEB PROCESS IDLE (web CPU split {' / '.join(f'{u / total:.0%}' for u in used)})"


def open_loop(
    agent: Any,
    hook: tuple[str, dict[str, str]],
    n8n_rate: float,
    multiples: list[float],
    seconds: float,
    warmup: float,
    pids: list[int],
    n8n_pid: int,
) -> list[str]:
    """Workflow A's webhook acceptance under an open loop (``benchmarks.openloop``): requests sent at
    a fixed rate over 32 connections, each latency counted from its due time. ``wrk``'s closed loop
    makes the mean latency at c=32 equal to 32 / throughput whatever the server does, so a p99 of
    20 ms there means 1600 answers a second; here the question is how long a delivery waits at a
    given load: n8n's own c=32 throughput (both systems), and ``multiples`` of it (Falcon queued,
    which must also complete the runs: the backlog when the load stops)."""
    from django.utils import timezone

    rows = []
    path, headers = hook
    falcon_url = f"http://127.0.0.1:{FALCON_QUEUED_PORT}{path}"
    n8n_url = f"http://127.0.0.1:{N8N_PORT}/webhook/bench"
    for multiple in multiples:
        rate = n8n_rate * multiple
        systems: list[tuple[str, str, dict[str, str]]] = [("n8n", n8n_url, {})] if multiple == 1 else []
        systems.append(("Falcon queued", falcon_url, headers))
        for system, url, system_headers in systems:
            openloop.load(url, rate, 32, warmup, system_headers, BODY)
            measured = [n8n_pid] if system == "n8n" else pids
            if system != "n8n":
                drain(agent)
            cpu0 = sum(tree_cpu(p) for p in measured)
            since = timezone.now()
            result = openloop.load(url, rate, 32, seconds, system_headers, BODY)
            until = timezone.now()
            label = f"open loop {rate:.0f}/s ({multiple:g}x n8n's c=32), 32 conns"
            cores = (sum(tree_cpu(p) for p in measured) - cpu0) / seconds
            if system == "n8n":
                tail = "every execution saved"
            else:
                counts = falcon_counts(agent, since, until)
                completed = counts["finished_in_window"] / seconds
                tail = f"{completed:.1f} runs/s completed, backlog {counts['unfinished']}"
                drain(agent)
            late = f", answers {result['late_s']:.1f} s late" if result["late_s"] > 1 else ""
            rows.append(
                f"| A | {label} | {system} | {result['rps']:.1f} answered/s{late} | {result['p50']:.1f} | "
                f"{result['p99']:.1f} | {cores:.2f} | {int(result['errors'])} errors | {tail} |"
            )
            print(rows[-1], flush=True)
    return rows


def ratio(falcon: float, n8n: float) -> str:
    """Falcon's throughput as a multiple of n8n's at the same level (the issue's goals are ratios)."""
    return f"{falcon / n8n:.2f}x" if n8n > 0 else "n/a (n8n answered nothing)"


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    warmup = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    concurrencies = [int(c) for c in os.environ.get("CONCS", "1 8 32").split()]
    workflows = os.environ.get("WORKFLOWS", "A B").split()
    bench = Path(os.environ.get("N8N_BENCH", "/tmp/n8nbench"))
    provider = {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{FAKE_PORT}/v1",
        "FALCON_API_RATE": "100000000/min",
    }
    os.environ.update(provider)
    setup_django()
    from django.utils import timezone

    agents = {
        "A": make_agent(THREE_STEPS, concurrent_runs=1000),
        "B": make_agent(ONE_LLM_CALL, concurrent_runs=1000),
    }
    hooks = {
        ("A", "inline"): webhook(agents["A"], sync=False),
        ("A", "queued"): webhook(agents["A"], sync=False),
        ("B", "sync"): webhook(agents["B"], sync=True),
        ("B", "queued"): webhook(agents["B"], sync=False),
    }
    start_n8n(bench)
    n8n_pid = int((bench / "n8n.pid").read_text())
    inline = start_falcon(FALCON_PORT, {})
    queued = start_falcon(FALCON_QUEUED_PORT, {"FALCON_WEBHOOK_INLINE_MAX_STEPS": "0"})
    workers = start_workers({})
    rows: list[str] = []
    anchors: dict[int, float] = {}
    open_multiples = [float(m) for m in os.environ.get("OPEN_LOOP", "1 2").split()]
    pids = [inline.pid, queued.pid, *[w.pid for w in workers]]
    try:
        waited = settle(pids)
        print(f"# Falcon's processes idle after {waited:.0f} s", flush=True)
        for w in workflows:
            modes = ["inline", "queued"] if w == "A" else ["sync", "queued"]
            n8n_path = "/webhook/bench" if w == "A" else "/webhook/bench-llm"
            for c in concurrencies:
                # n8n first, then each Falcon mode: the same level back to back on the same machine state.
                wrk(f"http://127.0.0.1:{N8N_PORT}{n8n_path}", c, warmup, {})
                cpu0 = tree_cpu(n8n_pid)
                result = wrk(f"http://127.0.0.1:{N8N_PORT}{n8n_path}", c, seconds, {})
                cores = (tree_cpu(n8n_pid) - cpu0) / seconds
                anchor = result["rps"]
                if w == "A":
                    anchors[c] = anchor
                rows.append(
                    f"| {w} | {c} | n8n | {result['rps']:.1f} req/s | {result['p50']:.1f} | "
                    f"{result['p99']:.1f} | "
                    f"{cores:.2f} | {int(result['bad'] + result['errors'])} errors | every execution saved |"
                )
                print(rows[-1], flush=True)
                for mode in modes:
                    path, headers = hooks[(w, mode)]
                    port = FALCON_QUEUED_PORT if (w, mode) == ("A", "queued") else FALCON_PORT
                    url = f"http://127.0.0.1:{port}{path}"
                    wrk(url, c, warmup, headers)
                    drain(agents[w])
                    web = inline if port == FALCON_PORT else queued
                    cpu0 = sum(tree_cpu(p) for p in pids)
                    web0 = children_cpu(web.pid)
                    since = timezone.now()
                    result = wrk(url, c, seconds, headers)
                    until = timezone.now()
                    cores = (sum(tree_cpu(p) for p in pids) - cpu0) / seconds
                    split = split_note(web0, children_cpu(web.pid), c)
                    counts = falcon_counts(agents[w], since, until)
                    steps_each = 3 if w == "A" else 1
                    completed = counts["finished_in_window"] / seconds
                    figure = (
                        f"{result['rps']:.1f} req/s"
                        if mode != "queued"
                        else (f"{completed:.1f} runs/s completed ({result['rps']:.1f} accepted/s)")
                    )
                    figure += f" = {ratio(result['rps'] if mode != 'queued' else completed, anchor)} n8n"
                    logged = (
                        f"backlog {counts['unfinished']}"
                        if mode == "queued"
                        else (f"{counts['finished_in_window']} runs succeeded")
                    )
                    drain(agents[w])
                    final = falcon_counts(agents[w], since, until)
                    rows.append(
                        f"| {w} | {c} | Falcon {mode} | {figure} | {result['p50']:.1f} | "
                        f"{result['p99']:.1f} | "
                        f"{cores:.2f} | {int(result['bad'] + result['errors'])} errors | {logged}; "
                        f"{final['steps']}/{final['created'] * steps_each} steps logged{split} |"
                    )
                    print(rows[-1], flush=True)
            if w == "A" and open_multiples and anchors.get(32):
                rows += open_loop(
                    agents["A"],
                    hooks[("A", "queued")],
                    anchors[32],
                    open_multiples,
                    seconds,
                    warmup,
                    pids,
                    n8n_pid,
                )
    finally:
        for process in (inline, queued, *workers):
            process.terminate()
        for process in (inline, queued, *workers):
            process.wait(timeout=60)
        stop_pidfile(bench / "n8n.pid")
        stop_pidfile(bench / "fake.pid")
    print()
    print(
        f"{seconds:g} s per level after {warmup:g} s warm-up; wrk, gunicorn, the worker, PostgreSQL, "
        f"{broker_name()} (the broker), n8n and the fake LLM share this machine's cores. CPU = cores used by "
        "the system under test."
    )
    print("| workflow | concurrency | system | throughput | p50 ms | p99 ms | CPU cores | errors | logged |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(json.dumps({"machine_cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
