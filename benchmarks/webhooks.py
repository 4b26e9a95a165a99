"""Webhook acceptance and end-to-end webhook runs, against gunicorn + PostgreSQL + Redis + a real worker.

1. Acceptance: requests/s and p50/p99 latency at concurrency 1, 8 and 32 (no worker running), and
   every accepted request must have produced a queued run.
2. End to end: a 3-step transform workflow triggered by webhooks for 30 s with a worker running;
   runs completed (and fully logged) per second. Such a short pure workflow runs inline in the
   webhook request by default; FALCON_WEBHOOK_INLINE_MAX_STEPS=0 measures the queued path instead.

    make bench   (or: python -m benchmarks.webhooks [seconds per level] [end-to-end seconds])
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time

from benchmarks.common import ROOT, make_agent, percentile, setup_django, start_worker, wait_worker_ready

THREE_STEPS = {
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "steps": [
        {"id": "a", "type": "transform", "value": "{{ input.n }}"},
        {"id": "b", "type": "transform", "value": "{{ steps.a.output + 1 }}"},
        {"id": "c", "type": "transform", "value": {"result": "{{ steps.b.output * 2 }}"}},
    ],
}
PORT = 8765


def start_gunicorn() -> subprocess.Popen[bytes]:
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1,localhost", "FALCON_SSL_REDIRECT": "0"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "falcon.wsgi",
            "--workers",
            "2",
            "--threads",
            "8",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def load(path: str, secret: str, concurrency: int, seconds: float) -> tuple[list[float], int, int]:
    """Keep-alive clients posting as fast as they can; returns latencies, accepted and failed counts."""
    latencies: list[float] = []
    counts = {"accepted": 0, "failed": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        n = 0
        local: list[float] = []
        accepted = failed = 0
        while time.monotonic() < stop_at:
            n += 1
            body = f'{{"n": {n}}}'.encode()
            started = time.perf_counter()
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json", "X-Token": secret}
            )
            response = connection.getresponse()
            response.read()
            local.append(time.perf_counter() - started)
            if response.status == 202:
                accepted += 1
            else:
                failed += 1
        with lock:
            latencies.extend(local)
            counts["accepted"] += accepted
            counts["failed"] += failed

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, counts["accepted"], counts["failed"]


def main() -> None:
    level_s = float(sys.argv[1]) if len(sys.argv) > 1 else 5
    e2e_s = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    os.environ.setdefault("FALCON_API_RATE", "1000000/min")
    setup_django()
    from agents.models import Run
    from agents.triggers.services import trigger_create
    from tenants.audit import Actor

    agent = make_agent(THREE_STEPS)
    trigger, secret = trigger_create(
        agent=agent,
        name="bench",
        kind="webhook",
        enabled=True,
        config={"auth": "header", "header_name": "X-Token", "rate_limit_per_minute": 10_000_000},
        input_mapping={"n": "{{ event.body.n }}"},
        actor=Actor.system("bench"),
        created_by=None,
    )
    assert secret is not None
    path = f"/hooks/{trigger.public_id}"
    server = start_gunicorn()
    try:
        print("webhook acceptance (gunicorn 2 workers x 8 threads; no worker consuming):")
        for concurrency in (1, 8, 32):
            before = Run.objects.count()
            latencies, accepted, failed = load(path, secret, concurrency, level_s)
            queued = Run.objects.count() - before
            print(
                f"  c={concurrency:<3} {accepted / level_s:7.1f} req/s"
                f"   p50 {percentile(latencies, 50) * 1000:6.1f} ms"
                f"   p99 {percentile(latencies, 99) * 1000:6.1f} ms   accepted {accepted}, failed {failed}, "
                f"runs created {queued}"
            )
        Run.objects.all().delete()
        worker = start_worker(concurrency=8)
        try:
            wait_worker_ready()
            started_at = time.monotonic()
            from django.utils import timezone

            window_start = timezone.now()
            latencies, accepted, failed = load(path, secret, 8, e2e_s)
            sent_for = time.monotonic() - started_at
            completed_in_window = Run.objects.filter(
                status="succeeded", finished_at__gte=window_start, finished_at__lte=timezone.now()
            ).count()
            drain_deadline = time.monotonic() + 300
            while Run.objects.exclude(status__in=Run.FINISHED).exists() and time.monotonic() < drain_deadline:
                time.sleep(0.2)
            drained = time.monotonic() - started_at
            total = Run.objects.filter(status="succeeded").count()
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        print(
            f"end to end (3 transform steps, c=8 for {e2e_s:g} s, 1 worker x 8 threads; "
            f"inline up to {os.environ.get('FALCON_WEBHOOK_INLINE_MAX_STEPS', '10')} steps):"
        )
        print(
            f"  accepted {accepted} webhooks ({accepted / sent_for:.1f}/s); completed while sending: "
            f"{completed_in_window / sent_for:.1f} runs/s"
        )
        print(
            f"  all {total} runs succeeded and logged after {drained:.1f} s: "
            f"{total / drained:.1f} runs/s overall"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
