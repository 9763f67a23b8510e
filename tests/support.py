"""Helpers for tests that run duly against real servers: waiting on a condition, and a
definitions folder holding drill processes beside the shipped calendars, org and templates."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


async def poll(
    check: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
) -> T:
    """Call `check` until it returns something truthy (and return it), failing after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            what = what if isinstance(what, str) else what()
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def definitions_with(folder: Path, processes: dict[str, str]) -> Path:
    """Write a definitions folder: the shipped calendars, org and templates, and `processes`
    (file stem -> YAML) as its only processes. Returns `folder`."""
    for part in ("calendars", "templates"):
        shutil.copytree(ROOT / "definitions" / part, folder / part)
    shutil.copy(ROOT / "definitions" / "org.yaml", folder / "org.yaml")
    (folder / "processes").mkdir()
    for name, text in processes.items():
        (folder / "processes" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder
