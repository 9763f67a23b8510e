"""How much memory does the worker hold with 1,000 and with 10,000 instances open?

Runs the embedded dev server (as `duly up` starts it) and `python worker.py` as a subprocess
(DULY_* pointing at a temporary SQLite store and the shipped definitions), then opens
`quote-follow-up` instances whose `call-customer` task waits (its SLA is two business days away,
so nothing fires) and reads the worker's VmRSS (resident now) and VmHWM (peak resident) from
/proc/<pid>/status: idle, then once 100, 500, 1,000 and 10,000 instances are open. Instances are
started with at most `--concurrency` not yet open (the bench watches duly's `tasks` table).

The worker keeps at most `DULY_CACHED_INSTANCES` (1,000) workflow instances in memory
(`max_cached_workflows`), each in its own sandbox; beyond that the SDK evicts the least recently
used (replayed from history when it next has work), which is why the figure should stay flat once
that many are open.

Usage: .venv/bin/python bench/worker_memory.py [--open 1000,10000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import structlog

from duly import client as duly_client
from duly.language.loader import load_definitions

PROCESS = "quote-follow-up"
SETTLE = 10.0  # seconds after the last task opened before reading, sampling the while
TARGET_MIB = 400
FLAT = 0.10


def quote(key: str) -> dict[str, object]:
    return {
        "quote": {"id": key, "number": key, "amount": 12_000},
        "contact": {"name": "Lee Park", "email": "lee@example.com"},
        "owner": "ana",
    }


async def bench(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    checkpoints = sorted(int(n) for n in args.open.split(","))
    rows: list[tuple[int, dict[str, int], int, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp,
        h.SmtpSink() as smtp,
    ):
        async with h.HttpSink() as webhooks:
            folder = Path(tmp)
            code = h.snapshot_code(folder)
            definitions_dir = h.copy_definitions(folder, webhooks=webhooks.port)
            definitions = load_definitions(definitions_dir)
            database = folder / "duly.db"
            async with h.dev_server(folder) as (server, client):
                task_queue = "bench-memory"
                worker = h.Subprocess(
                    h.python(str(code / "worker.py")),
                    env=h.worker_env(
                        code=code,
                        address=server.address,
                        task_queue=task_queue,
                        database=database,
                        definitions=definitions_dir,
                        smtp_port=smtp.port,
                    ),
                    log=folder / "worker.log",
                )
                tasks = h.TaskWatcher(database, interval=0.05)
                watching = asyncio.create_task(tasks.run())
                peak_seen = 0
                sampling = True

                async def sample() -> None:
                    nonlocal peak_seen
                    while sampling:
                        peak_seen = max(peak_seen, h.memory_kib(worker.pid)["VmRSS"])
                        await asyncio.sleep(0.5)

                try:
                    await worker.start()
                    await worker.wait_for_line("worker running")
                    sampler = asyncio.create_task(sample())
                    await asyncio.sleep(SETTLE)
                    rows.append((0, h.memory_kib(worker.pid), peak_seen, 0.0))
                    semaphore = asyncio.Semaphore(args.concurrency)

                    async def one(i: int) -> None:
                        async with semaphore:
                            key = f"M-{i:06d}"
                            instance = await duly_client.start_instance(
                                client, definitions, PROCESS, quote(key), task_queue=task_queue
                            )
                            await tasks.opened(f"{instance}/call-customer/1", timeout=600)

                    opened = 0
                    for target in [n for n in (100, 500) if n < checkpoints[0]] + checkpoints:
                        began = time.perf_counter()
                        await asyncio.gather(*(one(i) for i in range(opened, target)))
                        rate = (target - opened) / (time.perf_counter() - began)
                        opened = target
                        await asyncio.sleep(SETTLE)
                        rows.append((opened, h.memory_kib(worker.pid), peak_seen, rate))
                        print(
                            f"  {opened} open: VmRSS {h.mb(rows[-1][1]['VmRSS']):.0f} MB",
                            file=sys.stderr,
                        )
                    sampling = False
                    await sampler
                finally:
                    sampling = False
                    tasks.stop()
                    await watching
                    await worker.stop()

    print(f"worker: python worker.py; {PROCESS} instances open, each a task waiting on its SLA")
    print(f"{'open':>7}{'VmRSS MB':>11}{'VmHWM MB':>11}{'starts/s':>10}")
    for count, memory, _, rate in rows:
        started = f"{rate:10.1f}" if count else f"{'idle':>10}"
        print(f"{count:7d}{h.mb(memory['VmRSS']):11.0f}{h.mb(memory['VmHWM']):11.0f}{started}")
    by_count = {count: memory for count, memory, _, _ in rows}
    low, high = by_count[checkpoints[0]], by_count[checkpoints[-1]]
    ratio = high["VmRSS"] / low["VmRSS"]
    peak = max(memory["VmHWM"] for _, memory, _, _ in rows)
    print(
        f"RSS at {checkpoints[0]}: {h.mb(low['VmRSS']):.0f} MB; at {checkpoints[-1]}: "
        f"{h.mb(high['VmRSS']):.0f} MB; ratio {ratio:.2f}; peak (VmHWM) {h.mb(peak):.0f} MB"
    )
    if 100 in by_count and 500 in by_count:
        slope = (by_count[500]["VmRSS"] - by_count[100]["VmRSS"]) / 400
        print(f"per cached instance, between 100 and 500 open: {slope * 1.024:.0f} kB")
    under = h.mb(peak) <= TARGET_MIB
    flat = abs(ratio - 1) <= FLAT
    print(
        f"target peak <= {TARGET_MIB} MB: {'met' if under else 'MISSED'}; "
        f"flat within {FLAT:.0%}: {'met' if flat else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--open", default="1000,10000", help="instance counts to read RSS at")
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    h.run(bench(args))


if __name__ == "__main__":
    main()
