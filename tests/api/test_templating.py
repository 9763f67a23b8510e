"""Page templates escape what they show: a lead named `<script>` is text."""

from __future__ import annotations

from pathlib import Path

from duly.api.templating import environment, templates


def test_every_template_escapes_user_data_whatever_its_extension(tmp_path: Path) -> None:
    for name in ("inbox.html", "note.txt", "chart.svg"):
        (tmp_path / name).write_text("<p>{{ lead }}</p>")
    env = environment(tmp_path)
    for name in ("inbox.html", "note.txt", "chart.svg"):
        shown = env.get_template(name).render(lead="<script>alert(1)</script>")
        assert shown == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert templates(tmp_path).env.autoescape is True
