"""Jinja2 templates for server-rendered pages, escaping everything they show.

Pages show what CRMs sent (a lead's name, a quote's title): any of it may be markup. Every
template, whatever its file name, escapes every value unless a template marks it `|safe`
(keep that for markup duly made itself, such as `duly.language.diagram_svg.svg`).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from starlette.templating import Jinja2Templates

PAGES = Path(__file__).parent / "templates"
"""Where the web pages' templates live."""


def environment(directory: Path | str = PAGES) -> jinja2.Environment:
    """A Jinja2 environment over `directory` that autoescapes every template."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,  # not select_autoescape: a `.txt` or `.svg` page escapes too
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails the page, not blanks it
    )


def templates(directory: Path | str = PAGES) -> Jinja2Templates:
    """Starlette's template responses on an `environment(directory)`."""
    return Jinja2Templates(env=environment(directory))
