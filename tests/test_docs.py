"""The generated docs match the definitions and code, and the process drawings are sound.

docs/processes.md, docs/diagrams/*.svg and docs/*.schema.json are made by `duly docs`; a change to
a shipped process, to the language's models or to the drawing code that is not followed by
`duly docs` fails here, so the committed docs never go stale.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duly.cli import app
from duly.docs import generate, stale, write
from duly.language.diagram_svg import html_page, svg
from duly.language.loader import load_definitions
from duly.language.model import ProcessSpec

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "definitions"
SVG = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


@pytest.fixture(scope="module")
def shipped() -> dict[str, ProcessSpec]:
    return {name: p.spec for name, p in load_definitions(DEFINITIONS).processes.items()}


def steps_drawn(drawing: str) -> dict[str, ET.Element]:
    root = ET.fromstring(drawing)  # raises on anything that is not well-formed XML
    return {g.attrib["data-step"]: g for g in root.iter(f"{SVG}g") if "data-step" in g.attrib}


def test_committed_docs_are_what_duly_docs_generates_now() -> None:
    files = generate(ROOT, DEFINITIONS)
    out_of_date = [str(path.relative_to(ROOT)) for path in stale(ROOT, files)]
    assert out_of_date == [], f"stale docs {out_of_date}: run `duly docs`"


def test_docs_cover_every_shipped_process_and_every_schema(
    shipped: dict[str, ProcessSpec],
) -> None:
    files = generate(ROOT, DEFINITIONS)
    processes_md = files[ROOT / "docs" / "processes.md"]
    for name, spec in shipped.items():
        assert ROOT / "docs" / "diagrams" / f"{name}.svg" in files
        assert f"## {spec.title}" in processes_md
        assert f'<img src="diagrams/{name}.svg"' in processes_md
    assert processes_md.count("```mermaid") == len(shipped)
    for kind in ("process", "calendar", "org", "monitor"):
        schema = json.loads(files[ROOT / "docs" / f"{kind}.schema.json"])
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]


def test_process_schema_doc_is_what_duly_schema_prints() -> None:
    printed = runner.invoke(app, ["schema", "process"])
    assert printed.exit_code == 0
    assert (ROOT / "docs" / "process.schema.json").read_text(encoding="utf-8") == printed.stdout


def test_duly_docs_writes_then_check_passes_and_stale_files_fail_the_check(
    tmp_path: Path,
) -> None:
    args = ["docs", "--root", str(tmp_path), "--definitions", str(DEFINITIONS)]
    missing = runner.invoke(app, [*args, "--check"])
    assert missing.exit_code == 1
    assert "processes.md" in missing.stderr
    assert not (tmp_path / "docs").exists()  # --check writes nothing

    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0

    (tmp_path / "docs" / "processes.md").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "docs" / "diagrams" / "retired-process.svg").write_text("<svg/>", encoding="utf-8")
    stale_now = runner.invoke(app, [*args, "--check"])
    assert stale_now.exit_code == 1
    assert "processes.md" in stale_now.stderr
    assert "retired-process.svg" in stale_now.stderr

    write(tmp_path, generate(tmp_path, DEFINITIONS))
    assert not (tmp_path / "docs" / "diagrams" / "retired-process.svg").exists()
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0


# --- the SVG drawing ---------------------------------------------------------------------------


def test_every_shipped_process_draws_as_well_formed_svg_with_every_step(
    shipped: dict[str, ProcessSpec],
) -> None:
    for spec in shipped.values():
        drawn = steps_drawn(svg(spec))
        assert set(spec.steps) | {"start"} <= set(drawn)
        assert ("any step" in drawn) == bool(spec.on)


def test_edges_carry_outcomes_conditions_waits_and_target_slas(
    shipped: dict[str, ProcessSpec],
) -> None:
    texts = {t.text for t in ET.fromstring(svg(shipped["quote-follow-up"])).iter(f"{SVG}text")}
    assert {"reached", "voicemail", "lost", "otherwise", "quote.amount >= 50000"} <= texts
    assert {"1 business day", "SLA 2 business days", "SLA 4 business hours"} <= texts
    assert {"quote.accepted", "quote.rejected"} <= texts  # `on:` events, from "any step"


def test_highlight_marks_only_that_step(shipped: dict[str, ProcessSpec]) -> None:
    drawn = steps_drawn(svg(shipped["quote-follow-up"], highlight="wait-a-day"))
    current = [step for step, g in drawn.items() if "duly-current" in g.attrib["class"]]
    assert current == ["wait-a-day"]
    assert drawn["wait-a-day"].attrib.get("aria-current") == "step"


def test_unknown_highlight_marks_nothing(shipped: dict[str, ProcessSpec]) -> None:
    drawing = svg(shipped["quote-follow-up"], highlight="no-such-step")
    assert "duly-current" not in drawing


def hostile() -> ProcessSpec:
    return ProcessSpec.model_validate(
        {
            "process": "hostile",
            "title": "Quote <script>alert('x')</script> & {{ quote.id }}",
            "version": 1,
            "calendar": "us-east",
            "start": "ask",
            "steps": {
                "ask": {
                    "kind": "task",
                    "title": 'Ask <b>{{ contact.name }}</b> "now" & then',
                    "outcomes": {"again": "ask", "ok": "check"},
                },
                "check": {
                    "kind": "decision",
                    "branches": [{"when": "a < 3 and b > 'x' or c & d", "next": "done"}],
                    "otherwise": "ask",
                },
                "done": {"kind": "end"},
            },
        }
    )


def test_titles_and_conditions_are_escaped_never_markup() -> None:
    spec = hostile()
    drawing = svg(spec)
    assert "<script" not in drawing and "<b>" not in drawing
    root = ET.fromstring(drawing)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == spec.title
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert "a < 3 and b > 'x' or c & d" in texts
    assert set(steps_drawn(drawing)) >= {"ask", "check", "done"}


def test_html_page_is_offline_and_escaped() -> None:
    page = html_page(hostile())
    assert page.startswith("<!doctype html>")
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "&lt;script&gt;" in page
    assert "<details>" in page and "flowchart TD" in page
    drawing = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    assert set(steps_drawn(drawing)) >= {"ask", "check", "done"}


# --- `duly render` -----------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["mermaid", "svg", "html"])
def test_render_draws_a_shipped_process_in_each_format(output: str) -> None:
    result = runner.invoke(
        app, ["render", "quote-follow-up", "--definitions", str(DEFINITIONS), "--format", output]
    )
    assert result.exit_code == 0, result.output
    if output == "mermaid":
        assert result.stdout.startswith("flowchart TD")
    elif output == "svg":
        assert "call-customer" in steps_drawn(result.stdout)
    else:
        assert result.stdout.startswith("<!doctype html>")
        assert "<svg" in result.stdout and "flowchart TD" in result.stdout


def test_render_names_the_known_processes_for_an_unknown_one() -> None:
    result = runner.invoke(app, ["render", "nope", "--definitions", str(DEFINITIONS)])
    assert result.exit_code == 1
    assert "no process 'nope'" in result.stderr and "quote-follow-up" in result.stderr
