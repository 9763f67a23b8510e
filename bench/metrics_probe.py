"""Snapshots of the Temporal dev server's and the worker's Prometheus metrics beside a bench run,
and the difference between two snapshots: where a workflow task waited, from both sides.

    .venv/bin/python bench/metrics_probe.py record DIR [--every 15] [--worker-port 9464]
    .venv/bin/python bench/metrics_probe.py diff DIR FIRST LAST NAME[,NAME...] [--by LABEL,...]

`record` finds the running dev server's metrics port on its command line (`duly.stack.DevServer`
passes `--metrics-port`), then saves its /metrics every `--every` seconds to DIR/server/, and the
worker's (run the bench with `DULY_METRICS_PORT=9464` in its environment) to DIR/worker/, each
file named by the Unix second it was taken, until the server stops. `diff` prints, for each
histogram NAME, the count and bucket bounds of p50/p90/p99/max of what was observed between the
FIRST and LAST snapshot (indexes into the sorted files, negative from the end), grouped by the
labels named; a counter prints its increase. Used for bench/README.md, "Where a due rung waits".
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

SAMPLE = re.compile(r"(\w+)(\{.*\})?\s+(\S+)")


def server_metrics_port() -> str:
    while True:
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            found = re.search(r"start-dev .*--metrics-port (\d+)", line)
            if found and found.group(1) != "0":
                return found.group(1)
        time.sleep(1)


def record(folder: Path, every: float, worker_port: int) -> None:
    port = server_metrics_port()
    print(f"dev server metrics on port {port}", flush=True)
    for side in ("server", "worker"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    while True:
        second = int(time.time())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
                (folder / "server" / f"{second}.txt").write_bytes(got.read())
        except OSError:
            print("the dev server stopped", flush=True)
            return
        try:
            url = f"http://127.0.0.1:{worker_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as got:
                (folder / "worker" / f"{second}.txt").write_bytes(got.read())
        except OSError:
            pass  # the worker is not up yet, or serves no metrics
        time.sleep(every)


def samples(path: Path) -> dict[tuple[str, str], float]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#") and (found := SAMPLE.match(line)):
            out[(found.group(1), found.group(2) or "")] = float(found.group(3))
    return out


def label(labels: str, name: str) -> str:
    found = re.search(name + r'="([^"]*)"', labels)
    return found.group(1) if found else ""


def diff(files: list[Path], names: list[str], by: list[str]) -> None:
    before, after = samples(files[0]), samples(files[-1])
    print(f"{files[0].stem} -> {files[-1].stem}: {int(files[-1].stem) - int(files[0].stem)} s")
    for name in names:
        groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (metric, labels), value in after.items():
            if metric not in (name, f"{name}_bucket"):
                continue
            key = ",".join(f"{b}={label(labels, b)}" for b in by if label(labels, b))
            groups[key][label(labels, "le")] += value - before.get((metric, labels), 0.0)
        for key, buckets in sorted(groups.items()):
            if "" in buckets:  # a counter
                if buckets[""]:
                    print(f"{name} {key}: +{buckets['']:.0f}")
                continue
            bounds = sorted(buckets.items(), key=lambda b: float(b[0].replace("+Inf", "inf")))
            total = bounds[-1][1]
            if total:
                at = {
                    p: next(le for le, n in bounds if n >= p * total) for p in (0.5, 0.9, 0.99, 1)
                }
                print(
                    f"{name} {key}: n={total:.0f} p50<={at[0.5]} p90<={at[0.9]} "
                    f"p99<={at[0.99]} max<={at[1]} (s)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("folder", type=Path)
    rec.add_argument("--every", type=float, default=15.0)
    rec.add_argument("--worker-port", type=int, default=9464)
    dif = commands.add_parser("diff")
    dif.add_argument("folder", type=Path)
    dif.add_argument("first", type=int)
    dif.add_argument("last", type=int)
    dif.add_argument("names")
    dif.add_argument("--by", default="task_type,source,partition,activity_type")
    args = parser.parse_args()
    if args.command == "record":
        record(args.folder, args.every, args.worker_port)
        return
    files = sorted(args.folder.glob("*.txt"))
    if not files:
        sys.exit(f"no snapshots in {args.folder}")
    diff([files[args.first], files[args.last]], args.names.split(","), args.by.split(","))


if __name__ == "__main__":
    main()
