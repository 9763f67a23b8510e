"""JSON Schema of each definition file, so editors autocomplete and check YAML."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from duly.language.model import CalendarSpec, MonitorSpec, OrgSpec, ProcessSpec
from duly.language.sources import SourceSpec
from duly.simulate.scenario import ScenarioSpec

FileKind = Literal["process", "calendar", "org", "monitor", "source", "scenario"]
MODELS: dict[str, type[BaseModel]] = {
    "process": ProcessSpec,
    "calendar": CalendarSpec,
    "org": OrgSpec,
    "monitor": MonitorSpec,
    "source": SourceSpec,
    "scenario": ScenarioSpec,
}


def json_schema(kind: FileKind = "process") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one kind of definition file."""
    schema = MODELS[kind].model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": f"duly {kind} definition",
    }
