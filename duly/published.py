"""The published set: the one set of definitions every entry point starts processes from.

A definitions folder is published whole (every process, calendar, monitor, source, org.yaml and
template file), all or nothing, as one numbered revision in the store. The web app, the CLI, the
sources and the monitors read the newest revision when they need definitions; each keeps the
compiled set of the revision it read and checks the revision number (one indexed `max()`) per
use, so a publish is picked up by running processes without a restart.

Publishing validates the folder first, then stores every (process, version) with the
version-conflict check of `crud.publish_definitions`: a process changed without raising its
`version:` refuses the whole publish, and nothing is written. Running instances keep the
definition they started with.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, func, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from duly.language.compiler import CompiledProcess
from duly.language.loader import KINDS, YAML_SUFFIXES, Definitions, load_definitions
from duly.store import crud
from duly.store.db import SessionFactory, make_engine, migrate, session_factory, write_session
from duly.store.models import Definition, Instance, PublishedSet

log = structlog.get_logger(__name__)


# --- the folder as files -----------------------------------------------------------------------


def folder_files(root: Path | str) -> dict[str, str]:
    """Every file of a definitions folder that the loader reads, by path relative to it."""
    base = Path(root)
    chosen: list[Path] = []
    for kind in KINDS:
        folder = base / kind
        if folder.is_dir():
            chosen.extend(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
    if (base / "org.yaml").is_file():
        chosen.append(base / "org.yaml")
    if (base / "templates").is_dir():
        chosen.extend((base / "templates").glob("*.txt"))
    return {p.relative_to(base).as_posix(): p.read_text(encoding="utf-8") for p in sorted(chosen)}


def content_hash(files: dict[str, str]) -> str:
    """sha256 of the files, path by path: equal sets have equal hashes."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def load_files(files: dict[str, str]) -> Definitions:
    """Compile a published set of files, laid out as a definitions folder.

    Raises:
        DefinitionError: The files do not validate (a set is validated before it is published,
            so this means the set was published by a duly that accepted more).
    """
    with tempfile.TemporaryDirectory(prefix="duly-published-") as tmp:
        for relative, text in files.items():
            path = Path(tmp, relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        loaded = load_definitions(tmp)
        folders = (str(Path(tmp).resolve()), tmp)
    # listings and messages name the file as published, not its temporary copy
    loaded.processes = {
        name: process.model_copy(update={"file": _relative(process.file, folders)})
        for name, process in loaded.processes.items()
    }
    return loaded


def _relative(shown: str, folders: tuple[str, ...]) -> str:
    for folder in folders:
        if folder in shown:
            return shown.split(folder, 1)[-1].lstrip("/")
    return shown


# --- reading the published set -----------------------------------------------------------------


def latest_revision(session: Session) -> int | None:
    """The newest published revision, or None when nothing was ever published."""
    return session.exec(select(func.max(PublishedSet.revision))).one()


def latest_set(session: Session) -> PublishedSet | None:
    """The newest published set, or None."""
    revision = latest_revision(session)
    return None if revision is None else session.get(PublishedSet, revision)


class PublishedDefinitions:
    """The current published definitions, compiled once per revision and shared by callers.

    Args:
        sessions: Makes database sessions.
        fallback: What to use while nothing is published (a database nobody published to).
    """

    def __init__(self, sessions: SessionFactory, fallback: Definitions | None = None) -> None:
        self._sessions = sessions
        self._fallback = fallback if fallback is not None else Definitions()
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._current: Definitions | None = None

    @property
    def revision(self) -> int | None:
        """The revision `current()` last returned; None before it is read or when none exists."""
        return self._revision

    def current(self) -> Definitions:
        """The newest published definitions (one cheap query when the revision is unchanged)."""
        with self._sessions() as session:
            revision = latest_revision(session)
            if revision is None:
                return self._fallback
            if revision == self._revision and self._current is not None:
                return self._current
            with self._lock:
                if revision != self._revision or self._current is None:
                    row = session.get_one(PublishedSet, revision)
                    self._current = load_files(row.files)
                    self._revision = revision
                    log.info("published set loaded", revision=revision)
                return self._current


# --- what a publish changes --------------------------------------------------------------------


@dataclass
class ProcessChange:
    """What publishing changes in one process.

    Attributes:
        process: The process id.
        before: The version published now (None: a new process).
        after: The version to publish (None: the process is withdrawn; no new instance starts).
        steps_added: Step ids new in `after`.
        steps_removed: Step ids gone in `after`.
        steps_changed: Step ids present in both whose definition differs.
        slas: One line per SLA that differs (`step: 2 business days -> 1 business day`).
        running: Running instances by version: they keep the version they started with.
    """

    process: str
    before: int | None
    after: int | None
    steps_added: list[str] = field(default_factory=list)
    steps_removed: list[str] = field(default_factory=list)
    steps_changed: list[str] = field(default_factory=list)
    slas: list[str] = field(default_factory=list)
    running: dict[int, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The change, for people: one line per fact."""
        if self.before is None:
            head = f"{self.process}: new, v{self.after}"
        elif self.after is None:
            head = f"{self.process}: withdrawn (v{self.before}); no new instance starts"
        else:
            head = f"{self.process}: v{self.before} -> v{self.after}"
        out = [head]
        out += [f"  + step {s}" for s in self.steps_added]
        out += [f"  - step {s}" for s in self.steps_removed]
        out += [f"  ~ step {s}" for s in self.steps_changed]
        out += [f"  sla {line}" for line in self.slas]
        out += [
            f"  {count} running instance{'s' if count != 1 else ''} keep v{version}"
            for version, count in sorted(self.running.items())
        ]
        return out


@dataclass
class PublishPlan:
    """A validated folder beside what is published now.

    Attributes:
        files: The folder's files, as they would be published.
        definitions: The folder, compiled.
        revision: The revision published now (None: nothing yet).
        processes: Processes whose content changes.
        files_changed: Other files (calendars, monitors, sources, org, templates) that differ.
        unchanged: The folder is exactly what is published: publishing does nothing.
    """

    files: dict[str, str]
    definitions: Definitions
    revision: int | None
    processes: list[ProcessChange]
    files_changed: list[str]
    unchanged: bool

    def lines(self) -> list[str]:
        """The whole plan, for people."""
        if self.unchanged:
            return [f"nothing to publish: revision {self.revision} is this folder"]
        out: list[str] = []
        for change in self.processes:
            out += change.lines()
        out += [f"file {name} changed" for name in self.files_changed]
        return out or ["no process changes"]


def plan(session: Session, root: Path | str) -> PublishPlan:
    """Validate a folder and compare it with the published set.

    Raises:
        DefinitionError: The folder does not validate (every problem, with file:line:col).
    """
    definitions = load_definitions(root)
    files = folder_files(root)
    current = latest_set(session)
    before_files = current.files if current is not None else {}
    before = load_files(before_files) if current is not None else Definitions()
    changes = _process_changes(before, definitions, _running(session))
    files_changed = sorted(
        name
        for name in set(files) | set(before_files)
        if files.get(name) != before_files.get(name) and not name.startswith("processes/")
    )
    return PublishPlan(
        files=files,
        definitions=definitions,
        revision=current.revision if current is not None else None,
        processes=changes,
        files_changed=files_changed,
        unchanged=current is not None and current.content_hash == content_hash(files),
    )


def _running(session: Session) -> dict[str, dict[int, int]]:
    rows = session.exec(
        select(Instance.process, Instance.version, func.count())
        .where(col(Instance.status) == "running")
        .group_by(col(Instance.process), col(Instance.version))
    ).all()
    running: dict[str, dict[int, int]] = {}
    for process, version, count in rows:
        running.setdefault(process, {})[version] = count
    return running


def _process_changes(
    before: Definitions, after: Definitions, running: dict[str, dict[int, int]]
) -> list[ProcessChange]:
    changes = []
    for name in sorted(set(before.processes) | set(after.processes)):
        old, new = before.processes.get(name), after.processes.get(name)
        if old is not None and new is not None and old.hash == new.hash:
            continue
        change = ProcessChange(
            process=name,
            before=old.version if old else None,
            after=new.version if new else None,
            running=running.get(name, {}) if old is not None else {},
        )
        if old is not None and new is not None:
            _diff_steps(old, new, change)
        elif new is not None:
            change.steps_added = sorted(new.spec.steps)
        changes.append(change)
    return changes


def _diff_steps(old: CompiledProcess, new: CompiledProcess, change: ProcessChange) -> None:
    old_steps, new_steps = old.spec.steps, new.spec.steps
    change.steps_added = sorted(set(new_steps) - set(old_steps))
    change.steps_removed = sorted(set(old_steps) - set(new_steps))
    change.steps_changed = sorted(
        step
        for step in set(old_steps) & set(new_steps)
        if _dump(old_steps[step]) != _dump(new_steps[step])
    )
    for step in sorted(set(old_steps) | set(new_steps)):
        was = _sla(old_steps.get(step))
        now = _sla(new_steps.get(step))
        if was != now:
            change.slas.append(f"{step}: {was or 'none'} -> {now or 'none'}")
    for clock in sorted(set(old.spec.clocks) | set(new.spec.clocks)):
        was = _clock(old.spec.clocks.get(clock))
        now = _clock(new.spec.clocks.get(clock))
        if was != now:
            change.slas.append(f"clock {clock}: {was or 'none'} -> {now or 'none'}")


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def _sla(step: Any) -> str | None:
    sla = getattr(step, "sla", None)
    return _within(sla)


def _clock(clock: Any) -> str | None:
    return _within(clock)


def _within(holder: Any) -> str | None:
    if holder is None:
        return None
    dumped = holder.model_dump(mode="json", exclude_none=True)
    within = dumped.get("within")
    if isinstance(within, dict) and isinstance(within.get("text"), str):
        text = within["text"]  # a duration as written
    else:
        text = within if isinstance(within, str) else json.dumps(within, sort_keys=True)
    rungs = dumped.get("escalate")
    return f"{text}, {len(rungs)} rung{'s' if len(rungs) != 1 else ''}" if rungs else text


# --- publishing --------------------------------------------------------------------------------


@dataclass
class Published:
    """What a publish did.

    Attributes:
        revision: The revision now current.
        created: A new revision was written (False: the folder was already published).
        plan: What changed.
    """

    revision: int
    created: bool
    plan: PublishPlan


def publish(session: Session, root: Path | str, *, by: str = "") -> Published:
    """Validate a folder and publish it whole, in the caller's transaction.

    Raises:
        DefinitionError: The folder does not validate; nothing is written.
        crud.VersionConflicts: A process changed without raising its version; the caller must
            roll back (nothing of this call is kept).
    """
    plan_ = plan(session, root)
    return publish_plan(session, plan_, by=by)


def publish_plan(session: Session, plan_: PublishPlan, *, by: str = "") -> Published:
    """Publish a plan made by `plan` (see `publish`)."""
    crud.publish_definitions(session=session, processes=plan_.definitions.processes.values())
    crud.sync_org(session=session, org=plan_.definitions.org)
    if plan_.unchanged and plan_.revision is not None:
        return Published(revision=plan_.revision, created=False, plan=plan_)
    row = PublishedSet(content_hash=content_hash(plan_.files), files=plan_.files, published_by=by)
    session.add(row)
    session.flush()
    assert row.revision is not None
    log.info("definitions published", revision=row.revision, by=by or "-")
    return Published(revision=row.revision, created=True, plan=plan_)


def publish_if_same(
    session: Session, root: Path | str, definitions: Definitions, *, by: str = ""
) -> int | None:
    """Publish a folder at start, when it is the folder `definitions` were loaded from.

    `duly up` and `duly worker` load their definitions and publish them before anything runs.
    The folder is recorded as a revision only when its processes are the ones loaded (the same
    hashes), so a caller that loaded another folder never publishes the wrong one.

    Returns:
        The revision now current, or None when nothing was recorded.
    """
    if not Path(root).is_dir():
        return None
    plan_ = plan(session, root)
    if _fingerprint(plan_.definitions) != _fingerprint(definitions):
        return None
    return publish_plan(session, plan_, by=by).revision


def _fingerprint(definitions: Definitions) -> str:
    """What a set runs on: its processes' hashes, its monitors, sources and org."""
    content = {
        "processes": {p.name: p.hash for p in definitions.processes.values()},
        "monitors": {n: m.model_dump(mode="json") for n, m in definitions.monitors.items()},
        "sources": {n: s.model_dump(mode="json") for n, s in definitions.sources.items()},
        "org": definitions.org.model_dump(mode="json"),
    }
    return content_hash({"content": json.dumps(content, sort_keys=True, default=str)})


# --- the validate warning ----------------------------------------------------------------------


def republished_versions(session: Session, definitions: Definitions) -> list[str]:
    """Warnings for processes whose content differs from what their version was published as."""
    warnings = []
    for name, process in sorted(definitions.processes.items()):
        stored = session.exec(
            select(Definition).where(
                Definition.process == name, Definition.version == process.version
            )
        ).first()
        if stored is not None and stored.hash != process.hash:
            warnings.append(
                f"{process.file}: process {name} version {process.version} is already "
                "published with different content; raise `version:` to publish this change"
            )
    return warnings


# --- opening the store for a command -------------------------------------------------------------


def open_published(
    database_url: str, root: Path | str
) -> tuple[Engine, PublishedDefinitions, PublishedSet | None]:
    """Open the store for a command that starts or acts on instances, reading the published set.

    Only `duly up`, `duly worker`, `duly publish` and the admin page publish; other commands use
    what is published, so editing a file changes nothing until it is published. When nothing is
    published yet (a new database), the folder is published first, as `duly up` would.

    Returns:
        The engine, the published definitions, and the current published set row.

    Raises:
        DefinitionError: Nothing is published and the folder does not validate.
        crud.VersionConflicts: Nothing is published and the folder reuses a stored version.
    """
    engine = make_engine(database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        if latest_revision(session) is None:
            publish(session, root)
        current = latest_set(session)
        if current is not None:
            session.expunge(current)
    return engine, PublishedDefinitions(sessions), current


def folder_differs(root: Path | str, current: PublishedSet | None) -> bool:
    """Whether the folder on disk is not what is published (a cheap hash of the files)."""
    return (
        current is not None
        and Path(root).is_dir()
        and content_hash(folder_files(root)) != current.content_hash
    )


def republished_warnings(database_url: str, definitions: Definitions) -> list[str]:
    """`republished_versions` against a database, if there is one; nothing when it is absent.

    `duly validate` must work without a database (and must not create one), so a missing SQLite
    file or an unreachable server gives no warnings.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and (
        not url.database or url.database == ":memory:" or not Path(url.database).is_file()
    ):
        return []
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return republished_versions(session, definitions)
    except SQLAlchemyError:
        return []  # no database yet, or not migrated: nothing is published there
    finally:
        engine.dispose()
