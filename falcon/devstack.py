"""``python -m falcon.devstack``: web server, Celery worker and beat together, for ``make run``.

Ctrl-C (or SIGTERM) stops all three; if one of them dies, the others are stopped too, so a first
look never leaves half a product running in the background.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def _commands(host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "falcon",
            "worker",
            "--loglevel=INFO",
            "--pool=threads",
            "--concurrency=4",
        ],
        "beat": [python, "-m", "celery", "-A", "falcon", "beat", "--loglevel=INFO"],
        "smtp": [python, "manage.py", "smtp_inbound", "--host", host],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # Metrics start from zero with the processes that write them (falcon/__init__.py names the folder).
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink(missing_ok=True)
    for name, command in _commands(args.host, args.port).items():
        # Own process groups: the terminal's Ctrl-C reaches us, and we stop the children in order.
        children[name] = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)  # noqa: S603 - fixed argv
    print(
        f"Falcon runs on http://{args.host}:{args.port}/ (web, worker, beat, SMTP). Ctrl-C stops all.",
        flush=True,
    )

    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping the others.", flush=True)
                exit_code = child.returncode or 1
                stopping = True
                break
        else:
            time.sleep(0.5)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print("Stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
