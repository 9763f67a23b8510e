"""Load a definitions folder (or chosen files) into compiled, checked definitions.

Everything is read, every problem in every file is collected, and only when there are none is
anything returned: nothing half-loaded runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from duly.language.business_time import BusinessCalendar
from duly.language.calendars import compile_calendar, holiday_years
from duly.language.compiler import (
    CompiledProcess,
    Context,
    EmailTemplate,
    compile_process,
    validate_process,
)
from duly.language.errors import DefinitionError, Problem
from duly.language.model import CalendarSpec, MonitorSpec, OrgSpec
from duly.language.monitors import check_monitor
from duly.language.org import check_org
from duly.language.source import Source, collection_paused, parse_yaml
from duly.language.sources import SourceSpec, check_source
from duly.language.validation import validate_model

YAML_SUFFIXES = (".yaml", ".yml")
KINDS = ("processes", "calendars", "monitors", "sources")


@dataclass
class Definitions:
    """Everything under definitions/, checked and compiled."""

    processes: dict[str, CompiledProcess] = field(default_factory=dict)
    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    monitors: dict[str, MonitorSpec] = field(default_factory=dict)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    org: OrgSpec = field(default_factory=OrgSpec)
    files: list[str] = field(default_factory=list)


@dataclass
class _Files:
    processes: list[Path] = field(default_factory=list)
    calendars: list[Path] = field(default_factory=list)
    monitors: list[Path] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    org: Path | None = None
    templates: list[Path] = field(default_factory=list)

    def add_folder(self, folder: Path) -> None:
        for kind in KINDS:
            getattr(self, kind).extend(_yaml_files(folder / kind))
        if (folder / "org.yaml").is_file():
            self.org = folder / "org.yaml"
        if (folder / "templates").is_dir():
            self.templates.extend(sorted((folder / "templates").glob("*.txt")))


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())


def default_root() -> Path:
    """The definitions folder: $DULY_DEFINITIONS, else ./definitions."""
    return Path(os.environ.get("DULY_DEFINITIONS", "definitions"))


def load_definitions(root: Path | str | None = None, *, today: date | None = None) -> Definitions:
    """Load and compile a whole definitions folder; raise DefinitionError listing every problem."""
    return load_paths([], root=root, today=today)


def load_paths(
    paths: Sequence[Path | str],
    *,
    root: Path | str | None = None,
    today: date | None = None,
) -> Definitions:
    """Check chosen folders or files, with calendars, org and templates from `root` as context.

    A folder is laid out like definitions/; a file is a process, calendar, monitor or org file,
    told apart by its folder (processes/, calendars/, monitors/, org.yaml) or its first key.
    """
    base = Path(root) if root is not None else default_root()
    context_files, chosen = _Files(), _Files()
    if base.is_dir():
        context_files.add_folder(base)
    elif not paths:
        raise DefinitionError([Problem(str(base), 1, 1, "no definitions folder here")])
    problems: list[Problem] = []
    if not paths:
        chosen = context_files
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            chosen.add_folder(path)
        elif path.is_file():
            _classify(path, chosen, problems)
        else:
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
    with collection_paused():
        return _Build(context_files, chosen, today or date.today(), problems).run()


def _classify(path: Path, files: _Files, problems: list[Problem]) -> None:
    if path.name in ("org.yaml", "org.yml"):
        files.org = path
        return
    if path.parent.name in KINDS:
        getattr(files, path.parent.name).append(path)
        return
    head = path.read_text(encoding="utf-8", errors="replace")
    for key, kind in (
        ("process:", "processes"),
        ("calendar:", "calendars"),
        ("monitor:", "monitors"),
        ("source:", "sources"),
    ):
        if any(line.startswith(key) for line in head.splitlines()):
            getattr(files, kind).append(path)
            return
    if any(line.startswith(("users:", "teams:")) for line in head.splitlines()):
        files.org = path
        return
    problems.append(
        Problem(
            str(path),
            1,
            1,
            "not a duly definition: expected a top-level 'process', 'calendar', 'monitor', "
            "'source', or 'users'/'teams' key",
        )
    )


class _Build:
    def __init__(self, context: _Files, chosen: _Files, today: date, problems: list[Problem]):
        self.context_files = context
        self.chosen = chosen
        self.today = today
        self.problems = problems
        self.result = Definitions()

    def read(self, path: Path) -> tuple[Source | None, str]:
        shown = _shown(path)
        self.result.files.append(shown)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(shown, 1, 1, f"cannot read the file: {exc}"))
            return None, ""
        try:
            return parse_yaml(text, shown), text
        except DefinitionError as exc:
            self.problems.extend(exc.problems)
            return None, text

    def run(self) -> Definitions:
        context = Context()
        org_path = self.chosen.org or self.context_files.org
        if org_path is not None:
            context.org = self.load_org(org_path)
        calendar_paths = {
            p.resolve(): p for p in [*self.context_files.calendars, *self.chosen.calendars]
        }
        for path in calendar_paths.values():
            self.load_calendar(path, context)
        for path in [*self.context_files.templates, *self.chosen.templates]:
            self.load_template(path, context)
        for path in self.chosen.processes:
            self.load_process(path, context)
        for path in self.chosen.monitors:
            self.load_monitor(path, context)
        for path in self.chosen.sources:
            self.load_source(path)
        if self.problems:
            raise DefinitionError(self.problems)
        return self.result

    def load_org(self, path: Path) -> OrgSpec | None:
        source, _ = self.read(path)
        if source is None:
            return None
        org, problems = validate_model(OrgSpec, source, "the org (users and teams)")
        self.problems.extend(problems)
        if org is not None:
            self.problems.extend(check_org(org, source))
            self.result.org = org
        return org

    def load_calendar(self, path: Path, context: Context) -> None:
        source, _ = self.read(path)
        if source is None:
            return
        spec, problems = validate_model(CalendarSpec, source, "a calendar")
        self.problems.extend(problems)
        if spec is None:
            return
        if spec.calendar in context.calendars:
            self.problems.append(
                source.problem(("calendar",), f"calendar '{spec.calendar}' is defined twice")
            )
            return
        calendar, problems = compile_calendar(spec, source, holiday_years(self.today))
        self.problems.extend(problems)
        if calendar is not None:
            context.calendars[spec.calendar] = calendar
            context.calendar_data[spec.calendar] = source.data
            self.result.calendars[spec.calendar] = calendar

    def load_template(self, path: Path, context: Context) -> None:
        shown = _shown(path)
        text = path.read_text(encoding="utf-8")
        first, _, body = text.partition("\n")
        if not first.lower().startswith("subject:"):
            self.problems.append(
                Problem(shown, 1, 1, "an email template starts with a 'Subject: ...' line")
            )
            return
        from duly.language.expressions import template_problem

        subject = first.split(":", 1)[1].strip()
        for line_no, part in ((1, subject), (2, body)):
            problem = template_problem(part)
            if problem:
                self.problems.append(Problem(shown, line_no, 1, problem))
        context.templates[path.stem] = EmailTemplate(subject=subject, body=body.lstrip("\n"))

    def load_process(self, path: Path, context: Context) -> None:
        source, text = self.read(path)
        if source is None:
            return
        spec, problems = validate_process(source, context)
        if spec is None:
            self.problems.extend(problems)
            return
        if spec.process in self.result.processes:
            other = self.result.processes[spec.process].file
            problems.append(
                source.problem(("process",), f"process '{spec.process}' is also defined in {other}")
            )
        self.problems.extend(problems)
        if not problems:
            self.result.processes[spec.process] = compile_process(spec, source, text, context)

    def load_monitor(self, path: Path, context: Context) -> None:
        source, _ = self.read(path)
        if source is None:
            return
        spec, problems = validate_model(MonitorSpec, source, "a monitor")
        self.problems.extend(problems)
        if spec is None:
            return
        known_processes = {
            *self.result.processes,
            *(_process_names(self.chosen.processes)),
            *(_process_names(self.context_files.processes)),
        }
        problems = check_monitor(spec, source, context, known_processes)
        self.problems.extend(problems)
        if not problems:
            self.result.monitors[spec.monitor] = spec

    def load_source(self, path: Path) -> None:
        source, _ = self.read(path)
        if source is None:
            return
        spec, problems = validate_model(SourceSpec, source, "a source")
        self.problems.extend(problems)
        if spec is None:
            return
        problems = check_source(spec, source)
        if spec.source in self.result.sources:
            problems.append(source.problem(("source",), f"source '{spec.source}' is defined twice"))
        self.problems.extend(problems)
        if not problems:
            self.result.sources[spec.source] = spec


def _process_names(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("process:"):
                names.add(line.split(":", 1)[1].split("#")[0].strip())
    return names


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
