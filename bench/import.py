"""How fast does `duly import` backfill a CRM export? 10,000 HubSpot contacts by default.

On the embedded dev server (started as `duly up` starts it) and a fresh SQLite store, the bench
writes a HubSpot contacts export (CSV: Record ID, names, owner id, create date), maps it through
the shipped `hubspot` source (`duly.sources.importer.plan`, timed), and sends it the way
`duly import` does (`deliver`: the same inbound service as /api/events, 16 at a time, timed):
each record starts a lead-follow-up instance (a workflow durably started in Temporal, the event
recorded once). It then imports the same file again: every record is a duplicate and nothing
starts. No worker runs, so the instances wait for one: this measures the import, not the
instances' work (bench/throughput.py measures that).

Usage: .venv/bin/python bench/import.py [--records 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _harness as h
import structlog

from duly.language.loader import load_definitions
from duly.services.context import ServiceContext, TemporalProvider
from duly.settings import Settings
from duly.sources.importer import deliver, plan
from duly.store.db import session_factory
from duly.worker import prepare_database

OWNERS = ("90011", "90012", "90013", "")  # ana, ben, chloe, and nobody's (the team fallback)


def write_export(path: Path, records: int) -> None:
    """A HubSpot contacts export of `records` open contacts, created over the last 30 days."""
    now = datetime.now(UTC)
    lines = ["hs_object_id,firstname,lastname,company,hubspot_owner_id,createdate"]
    for n in range(records):
        created = (now - timedelta(minutes=3 * n)).isoformat()
        lines.append(f"{100000 + n},Kim,Lee {n},Acme {n % 97},{OWNERS[n % 4]},{created}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def main(records: int, concurrency: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="duly-bench-import-") as tmp:
        folder = Path(tmp)
        definitions = load_definitions(h.ROOT / "definitions")
        settings = Settings(
            database_url=f"sqlite:///{folder / 'duly.db'}", task_queue="bench-import"
        )
        engine = prepare_database(settings, definitions)
        export = folder / "contacts.csv"
        write_export(export, records)
        async with h.dev_server(folder) as (_, client):
            context = ServiceContext(
                settings, definitions, session_factory(engine), TemporalProvider.of(client)
            )
            source = definitions.sources["hubspot"]
            began = time.perf_counter()
            planned = plan(export, source, "contact", definitions)
            mapped = time.perf_counter() - began
            assert len(planned.events) == records, planned.skipped[:3]

            began = time.perf_counter()
            first = await deliver(context, planned.events, concurrency=concurrency)
            imported = time.perf_counter() - began
            assert (first.accepted, first.duplicates) == (records, 0), first

            began = time.perf_counter()
            again = await deliver(context, planned.events, concurrency=concurrency)
            reimported = time.perf_counter() - began
            assert (again.accepted, again.duplicates) == (0, records), again
        engine.dispose()
    print(f"records: {records} HubSpot contacts (CSV), concurrency {concurrency}")
    print(f"map (plan)           {mapped:8.2f} s   {records / mapped:8.0f} records/s")
    print(f"import               {imported:8.2f} s   {records / imported:8.0f} instances/s")
    print(f"import again (dups)  {reimported:8.2f} s   {records / reimported:8.0f} records/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    arguments = parser.parse_args()
    sys.path.insert(0, str(h.ROOT))
    h.run(main(arguments.records, arguments.concurrency))
