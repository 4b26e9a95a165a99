"""Verifies an evidence bundle with the standard library only — no Falcon, no database:

    python agents/compliance/verify.py bundle.zip      (or: manage.py compliance_verify bundle.zip)

Every file must match the SHA-256 the manifest gives, no file may be added or missing, and every audit
event must match its own hash and link to the event before it (so an edited or removed event shows
even when someone rewrote the manifest's hashes). Exit status 1 and one line per problem otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from typing import Any

FORMAT = "falcon.evidence"


def bundle_verify(data: bytes) -> list[str]:
    """Every problem found in a bundle (empty: it is intact). Standard library only: runs offline."""
    problems: list[str] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        return [f"not an evidence bundle: {exc}"]
    if manifest.get("format") != FORMAT:
        problems.append("manifest.json: not an evidence bundle")
    listed = manifest.get("files") or {}
    present = set(archive.namelist()) - {"manifest.json"}
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: not in the manifest")
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: missing")
            continue
        if hashlib.sha256(archive.read(name)).hexdigest() != digest:
            problems.append(f"{name}: changed (its SHA-256 differs from the manifest's)")
    if "audit_events.jsonl" in present:
        problems += _events_problems(archive.read("audit_events.jsonl"))
    return problems


def _events_problems(raw: bytes) -> list[str]:
    """Each event's hash over its fields, and each one's link to the one before it in the file."""
    problems = []
    previous: dict[str, Any] | None = None
    for number, line in enumerate(raw.decode().splitlines(), start=1):
        try:
            event = json.loads(line)
        except ValueError:
            problems.append(f"audit_events.jsonl line {number}: not JSON")
            continue
        recorded = event.pop("hash", None)
        payload = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        if hashlib.sha256(payload.encode()).hexdigest() != recorded:
            problems.append(f"audit event #{event.get('seq')}: its contents do not match its hash")
        if previous is not None:
            if event.get("seq") != previous["seq"] + 1:
                problems.append(f"audit event #{event.get('seq')}: follows #{previous['seq']} (a gap)")
            elif event.get("prev_hash") != previous["hash"]:
                problems.append(f"audit event #{event.get('seq')}: does not link to #{previous['seq']}")
        previous = {"seq": event.get("seq"), "hash": recorded}
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: verify.py BUNDLE.zip", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as handle:
        problems = bundle_verify(handle.read())
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{argv[1]}: {'intact' if not problems else f'NOT intact ({len(problems)} problems)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
