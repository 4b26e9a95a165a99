"""What the operations work (#16) adds to each run when tracing is off: the Prometheus figures a
queued run of three steps leaves (multiprocess mode: each one an mmap write), its JSON log line
(context and redaction included), and the tracing helpers' no-op path. No database: the pieces
alone, in microseconds per run.

    make bench   (or: python -m benchmarks.observability_overhead [runs])
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import time
import uuid


def main(runs: int = 20000) -> None:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="falcon-bench-metrics-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")
    import django

    django.setup()
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    from falcon import logs, metrics, tracing

    for n in range(200):  # a worker that has seen 200 credentials: every log line is checked against them
        logs.secret_seen(f"secret-value-{n:04d}-{uuid.uuid4().hex}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("benchmarks.run")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def figures() -> None:
        metrics.RUNS_STARTED.labels("webhook").inc()
        metrics.QUEUE_WAIT.labels("webhook").observe(0.004)
        for _ in range(3):
            metrics.STEP_DURATION.labels("transform", "succeeded").observe(0.0002)
        metrics.RUN_DURATION.labels("succeeded").observe(0.003)
        metrics.RUNS_FINISHED.labels("succeeded", "webhook").inc()
        metrics.WEBHOOK_LATENCY.labels("202").observe(0.01)
        metrics.WEBHOOK_REQUESTS.labels("202").inc()

    def log_line() -> None:
        with logs.bound(tenant="t-1", run_id="r-1"):
            logger.info(
                "Run %s %s after %.0f ms",
                "r-1",
                "succeeded",
                3.2,
                extra={"status": "succeeded", "duration_ms": 3.2, "trigger": "webhook"},
            )

    def spans() -> None:
        span = tracing.start("invoke_agent bench", {"falcon.run.id": "r-1"})
        token = otel_context.attach(trace.set_span_in_context(span))
        otel_context.detach(token)
        span.end()

    for name, piece in (("metrics (9 figures)", figures), ("log line", log_line), ("tracing, off", spans)):
        piece()
        started = time.perf_counter()
        for _ in range(runs):
            piece()
        per_run = (time.perf_counter() - started) / runs * 1e6
        print(f"{name:22s} {per_run:7.1f} µs per run")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
