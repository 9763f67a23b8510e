"""Draw a process as a self-contained SVG (no network, no JavaScript), and an offline HTML page.

A small layered drawing: loops are found by a depth-first search and turned around, each step
sits at the depth of its longest path from `start` (ends share the bottom row when that keeps
edges short), edges that span layers run through waypoints (an edge's label is one of them, so
labels get room of their own), barycenter sweeps reorder each layer to cut crossings, and each
layer is placed as close to its neighbours as the spacing allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from html import escape
from math import fsum, hypot

from duly.language.diagram import mermaid, sla_text, step_kind
from duly.language.graph import transitions
from duly.language.model import (
    ProcessSpec,
    Step,
    TaskStep,
)

START, ANY = ":start", ":any"  # ':' never occurs in a step id
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
GAP_Y, MARGIN = 26.0, 24.0
_FILL = {"task": "#eef4ff", "action": "#f3eefe", "wait": "#fff8e1", "decision": "#fdeee8"}
_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Point = tuple[float, float]
Route = list[tuple[Point, Point]]  # points along an edge, each with the line's direction there


@dataclass
class _Node:
    key: str
    kind: str  # a step kind, start, any, or a waypoint: dummy or label
    lines: list[str] = field(default_factory=list)
    detail: str = ""
    w: float = 6.0
    h: float = 0.0
    layer: int = 0
    x: float = 0.0  # centre
    y: float = 0.0


@dataclass
class _Edge:
    source: str
    target: str
    label: list[str]
    back: bool = False
    chain: list[str] = field(default_factory=list)  # top to bottom, waypoints included


def _n(value: float, digits: int = 1) -> str:
    """A coordinate as SVG text: the one place numbers are rounded, and never `-0.0`.

    Together with `fsum` (exact on every Python, where `sum` of floats changed in 3.12), this keeps
    the drawings byte-identical on every supported Python.
    """
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def text_width(text: str, size: float) -> float:
    """Estimated width of text in a sans-serif font (no font metrics offline)."""
    em = fsum(
        0.3 if c in "il.,:;'|!jI" else 0.4 if c in "ftr()[] " else 0.9 if c in "mwMW@%" else
        0.72 if c.isupper() else 0.6 for c in text
    )  # fmt: skip
    return em * size


def _xml(text: str) -> str:
    return escape(_INVALID_XML.sub("", text), quote=True)


def _wrap(text: str, limit: int = 34) -> list[str]:
    lines: list[str] = []
    for word in re.findall(r"(?:\{\{.*?\}\}|\S)+", text):  # a {{ placeholder }} stays whole
        if lines and len(lines[-1]) + 1 + len(word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _detail(step_id: str, step: Step) -> str:
    kind = step_kind(step_id, step)
    return f"{step_id} · {kind}" if step.title else kind


def _node(key: str, kind: str, lines: list[str], detail: str = "") -> _Node:
    node = _Node(key, kind, lines, detail)
    size = 11 if kind == "label" else 13
    tw = max([text_width(t, size) for t in lines] + [text_width(detail, 11)])
    th = (size + 4) * len(lines) + (15 if detail else 0)
    node.w, node.h = tw + (8 if kind == "label" else 28), th + (4 if kind == "label" else 16)
    node.w += {"action": 16, "wait": 0.6 * node.h, "end": 0.4 * node.h}.get(kind, 0)
    if kind == "decision":  # text in the middle of a diamond: |x|/(w/2) + |y|/(h/2) <= 1
        node.w, node.h = tw / 0.6 + 8, th / 0.42 + 4
    elif kind == "start":
        node.w = node.h = 20
    return node


class _Layout:
    def __init__(self, spec: ProcessSpec) -> None:
        self.nodes = {START: _node(START, "start", [])}
        for step_id, step in spec.steps.items():
            lines = _wrap(step.title or step_id)
            self.nodes[step_id] = _node(step_id, step.kind, lines, _detail(step_id, step))
        sla = {s: sla_text(t.sla) for s, t in spec.steps.items() if isinstance(t, TaskStep)}
        self.edges = [_Edge(START, spec.start, [sla.get(spec.start, "")])]
        for step_id, step in spec.steps.items():
            for move in transitions(step):
                label = [move.label, sla.get(move.target, "")]
                self.edges.append(_Edge(step_id, move.target, label))
        if spec.on:
            self.nodes[ANY] = _node(ANY, "any", ["any step"])
            self.edges += [_Edge(ANY, t, [e]) for e, t in spec.on.items()]
        self.edges = [e for e in self.edges if e.target in self.nodes]
        for edge in self.edges:
            edge.label = [part for part in edge.label if part]
        self._find_back_edges([START, *spec.steps])
        self._assign_layers()
        self._order()
        self._place()

    def _find_back_edges(self, roots: list[str]) -> None:
        out: dict[str, list[_Edge]] = {key: [] for key in self.nodes}
        for edge in self.edges:
            out[edge.source].append(edge)
        state: dict[str, int] = {}  # 1 while on the depth-first stack, 2 when done
        for root in roots:
            stack = [] if root in state else [(root, iter(out[root]))]
            state.setdefault(root, 1)
            while stack:  # iterative: a thousand-step process must not hit the recursion limit
                key, todo = stack[-1]
                going = next(todo, None)
                if going is None:
                    state[key] = 2
                    stack.pop()
                elif going.target not in state:
                    state[going.target] = 1
                    stack.append((going.target, iter(out[going.target])))
                elif state[going.target] == 1:
                    going.back = True

    def _assign_layers(self) -> None:
        """Layer 2n for steps n deep, ends at the bottom; odd layers hold waypoints and labels."""
        preds: dict[str, list[str]] = {key: [] for key in self.nodes}
        for e in self.edges:
            if e.source != e.target and ANY not in (e.source, e.target):
                preds[e.source if e.back else e.target].append(e.target if e.back else e.source)
        for key in TopologicalSorter(preds).static_order():  # longest path from a root
            self.nodes[key].layer = max((self.nodes[p].layer + 2 for p in preds[key]), default=0)
        # Ends share the bottom row, unless (in a big process) that makes edges much longer;
        # ends that only `on:` events reach go there anyway.
        bottom = 2 + max(n.layer for n in self.nodes.values() if n.kind != "end")
        ends = [n for n in self.nodes.values() if n.kind == "end"]
        longer = sum(bottom - self.nodes[k].layer for n in ends for k in preds[n.key]) // 2
        for node in ends:
            if not preds[node.key] or longer <= 2 * len(self.nodes):
                node.layer = bottom
        if ANY in self.nodes:  # just above its nearest target, so its dashed edges stay short
            lowest = min(self.nodes[e.target].layer for e in self.edges if e.source == ANY)
            if lowest < 2:  # a step only `on:` reaches sits at the top: make room above it
                for node in self.nodes.values():
                    node.layer += 2
            self.nodes[ANY].layer = max(0, lowest - 2)
        self.layers: list[list[str]] = [
            [] for _ in range(max(n.layer for n in self.nodes.values()) + 1)
        ]
        for key, node in self.nodes.items():  # the written order is a fair first ordering
            self.layers[node.layer].append(key)
        for index, edge in enumerate(self.edges):
            top, low = (edge.target, edge.source) if edge.back else (edge.source, edge.target)
            edge.chain = [top]
            span = range(self.nodes[top].layer + 1, self.nodes[low].layer)
            if top == low:  # a step leading to itself: a loop through a waypoint just above it
                span = range(self.nodes[top].layer - 1, self.nodes[top].layer)
            at_label = (span[-1] if edge.back else span[0]) if span else 0  # near the source
            for layer in span:
                key = f":{index}.{layer}"
                labelled = edge.label and layer == at_label
                way = _node(key, "label", edge.label) if labelled else _Node(key, "dummy")
                way.layer = layer
                self.nodes[way.key] = way
                self.layers[layer].append(way.key)
                edge.chain.append(way.key)
            edge.chain.append(low)

    def _neighbours(self, up: bool) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {key: [] for key in self.nodes}
        for edge in self.edges:
            for a, b in zip(edge.chain, edge.chain[1:], strict=False):
                if a != b:
                    result[b if up else a].append(a if up else b)
        return result

    def _crossings(self) -> int:
        pos = {key: i for layer in self.layers for i, key in enumerate(layer)}
        between: list[list[tuple[int, int]]] = [[] for _ in self.layers]
        for edge in self.edges:
            for a, b in zip(edge.chain, edge.chain[1:], strict=False):
                if self.nodes[b].layer == self.nodes[a].layer + 1:  # not a step's loop to itself
                    between[self.nodes[a].layer].append((pos[a], pos[b]))
        return sum(
            1 for pairs in between for i, (a, b) in enumerate(pairs) for c, d in pairs[i + 1 :]
            if (a - c) * (b - d) < 0
        )  # fmt: skip

    def _order(self) -> None:
        """Barycenter sweeps, down then up; keep the ordering with the fewest crossings."""
        near = {True: self._neighbours(up=True), False: self._neighbours(up=False)}
        best, fewest = [list(layer) for layer in self.layers], self._crossings()
        for sweep in range(8):
            down = sweep % 2 == 0
            for i in range(1, len(self.layers)) if down else range(len(self.layers) - 2, -1, -1):
                ref = {key: n for n, key in enumerate(self.layers[i - 1 if down else i + 1])}
                keyed = []
                for pos, key in enumerate(self.layers[i]):
                    found = [ref[k] for k in near[down][key] if k in ref]
                    keyed.append((sum(found) / len(found) if found else pos, key))
                self.layers[i] = [key for _, key in sorted(keyed, key=lambda pair: pair[0])]
            if (crossings := self._crossings()) < fewest:
                best, fewest = [list(layer) for layer in self.layers], crossings
        self.layers = best

    def _place(self) -> None:
        top = MARGIN
        for layer in self.layers:
            height = max(self.nodes[key].h for key in layer) if layer else 0.0
            for key in layer:
                self.nodes[key].y = top + height / 2
            top += height + GAP_Y
        for layer in self.layers:
            self._pack(layer, [0.0] * len(layer))
        ups, downs = self._neighbours(up=True), self._neighbours(up=False)
        for sweep in range(8):
            forward = sweep % 2 == 0
            for layer in self.layers if forward else self.layers[::-1]:
                wanted = []
                for key in layer:
                    near = ups[key] + downs[key] if sweep >= 6 else (ups if forward else downs)[key]
                    xs = [self.nodes[k].x for k in near]
                    wanted.append(fsum(xs) / len(xs) if xs else self.nodes[key].x)
                self._pack(layer, wanted)
        left = min(n.x - n.w / 2 for n in self.nodes.values())
        for node in self.nodes.values():
            node.x -= left

    def _pack(self, layer: list[str], wanted: list[float]) -> None:
        """Least-squares x positions keeping order and spacing (pool adjacent violators)."""
        offsets, total = [], 0.0
        for i, key in enumerate(layer):
            if i:
                a, b = self.nodes[layer[i - 1]], self.nodes[key]
                total += (a.w + b.w) / 2 + (12 if {a.kind, b.kind} & {"dummy", "label"} else 40)
            offsets.append(total)
        blocks: list[list[float]] = []  # [sum of (wanted - offset), count]
        for want, offset in zip(wanted, offsets, strict=True):
            blocks.append([want - offset, 1.0])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                value, count = blocks.pop()
                blocks[-1][0] += value
                blocks[-1][1] += count
        i = 0
        for value, count in blocks:
            for _ in range(int(count)):
                self.nodes[layer[i]].x = value / count + offsets[i]
                i += 1


def _port(node: _Node, side: str, dx: float = 0.0) -> Point:
    """Where an edge meets a node: on its top or bottom (shifted by dx), or its left or right."""
    if side in ("left", "right"):
        return (node.x + (node.w / 2 if side == "right" else -node.w / 2), node.y)
    drop = node.h / 2 * (1 - abs(dx) / (node.w / 2)) if node.kind == "decision" else node.h / 2
    return (node.x + dx, node.y + (drop if side == "bottom" else -drop))


def _routes(layout: _Layout) -> list[Route]:
    """Each edge as points to pass through, with the line's direction at each.

    Forward edges leave below and enter above; a loop back up leaves and enters on the side its
    waypoints lie on when they lie beside the step, so it reads apart from the flow.
    """
    plans: list[tuple[list[_Node], list[str]]] = []
    groups: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for n, edge in enumerate(layout.edges):
        seq = [layout.nodes[k] for k in (edge.chain[::-1] if edge.back else edge.chain)]
        sides = ["top", "bottom"] if edge.back else ["bottom", "top"]
        if edge.source == edge.target:
            sides = ["right", "top"]
        for i, (node, way) in enumerate(((seq[0], seq[1]), (seq[-1], seq[-2]))):
            if edge.back and edge.source != edge.target and abs(way.x - node.x) > node.w / 2 - 12:
                sides[i] = "right" if way.x > node.x else "left"
            groups.setdefault((node.key, sides[i]), []).append((way.x, n, i))
        plans.append((seq, sides))
    shift: dict[tuple[int, int], float] = {}
    for (key, _), members in groups.items():  # spread edges sharing a side of a step
        node, count = layout.nodes[key], len(members)
        flat = {"wait": node.w / 2 - 0.3 * node.h, "end": (node.w - node.h) / 2}
        half = min(flat.get(node.kind, node.w / 4), 7.0 * (count - 1))
        for i, (_, n, end) in enumerate(sorted(members)):
            shift[(n, end)] = -half + 2 * half * i / (count - 1) if half > 0 else 0.0
    leave = {"bottom": (0.0, 1.0), "top": (0.0, -1.0), "right": (1.0, 0.0), "left": (-1.0, 0.0)}
    routes = []
    for n, (seq, sides) in enumerate(plans):
        points = [_port(seq[0], sides[0], shift[(n, 0)])]
        points += [(w.x, w.y) for w in seq[1:-1]] + [_port(seq[-1], sides[1], shift[(n, 1)])]
        tangents = [leave[sides[0]]]
        for (px, py), (qx, qy) in zip(points, points[2:], strict=False):  # Catmull-Rom
            length = hypot(qx - px, qy - py) or 1.0
            tangents.append(((qx - px) / length, (qy - py) / length))
        arrive = leave[sides[1]]
        routes.append(list(zip(points, [*tangents, (-arrive[0], -arrive[1])], strict=True)))
    return routes


def _curves(route: Route) -> list[tuple[Point, Point, Point]]:
    """Cubic segments (two control points, end) leaving and arriving along the route's directions.

    A vertical end reaches half the drop, for a smooth slope; a side end swings out further.
    """
    curves = []
    for ((px, py), (tx, ty)), ((qx, qy), (ux, uy)) in zip(route, route[1:], strict=False):
        far, drop = max(24.0, 0.4 * hypot(qx - px, qy - py)), max(8.0, abs(qy - py) / 2)
        a, b = (drop if abs(ty) > 0.5 else far), (drop if abs(uy) > 0.5 else far)
        curves.append(((px + tx * a, py + ty * a), (qx - ux * b, qy - uy * b), (qx, qy)))
    return curves


def _shape(node: _Node, paint: str) -> str:
    x0, x1 = node.x - node.w / 2, node.x + node.w / 2
    y0, y1 = node.y - node.h / 2, node.y + node.h / 2
    rect = f'<rect x="{_n(x0)}" y="{_n(y0)}" width="{_n(node.w)}" height="{_n(node.h)}"'
    inset = 0.3 * node.h
    corners = {
        "decision": [(node.x, y0), (x1, node.y), (node.x, y1), (x0, node.y)],
        "wait": [(x0 + inset, y0), (x1 - inset, y0), (x1, node.y), (x1 - inset, y1),
                 (x0 + inset, y1), (x0, node.y)],
    }.get(node.kind)  # fmt: skip
    if corners:
        return f'<polygon points="{" ".join(f"{_n(x)},{_n(y)}" for x, y in corners)}" {paint}/>'
    if node.kind == "start":
        return f'<circle cx="{_n(node.x)}" cy="{_n(node.y)}" r="10" fill="#2d3748"/>'
    if node.kind == "action":  # a subroutine box: double bars on both sides
        bars = "".join(f'<path d="M{_n(x)},{_n(y0)}V{_n(y1)}" {paint}/>' for x in (x0 + 8, x1 - 8))
        return f"{rect} {paint}/>{bars}"
    radius = node.h / 2 if node.kind in ("end", "any", "label") else 8
    dash = ' stroke-dasharray="5 4"' if node.kind == "any" else ""
    return f'{rect} rx="{_n(radius)}" {paint}{dash}/>'


def _text(node: _Node) -> str:
    size = 11 if node.kind == "label" else 13
    top = node.y - ((size + 4) * len(node.lines) + (15 if node.detail else 0)) / 2
    rows = [(line, size, top + size + (size + 4) * i) for i, line in enumerate(node.lines)]
    if node.detail:
        rows.append((node.detail, 11, top + (size + 4) * len(node.lines) + 12))
    grey = "#5a6578" if node.kind == "any" else "#1a202c"
    italic = ' font-style="italic"' if node.kind == "any" else ""
    out = []
    for line, font, y in rows:
        color = "#5a6578" if font == 11 and node.kind != "label" else grey
        color = "#b45309" if node.kind == "label" and line.startswith("SLA ") else color
        out.append(
            f'<text x="{_n(node.x)}" y="{_n(y)}" font-size="{font}" text-anchor="middle" '
            f'fill="{color}"{italic}>{_xml(line)}</text>'
        )
    return "".join(out)


def _paint(node: _Node, current: bool) -> str:
    if current:
        return 'fill="#fff3cd" stroke="#b8860b" stroke-width="3"'
    if node.kind == "label":
        return 'fill="#fff" stroke="none"'
    if node.kind == "end":
        return 'fill="#e8f5e9" stroke="#2e7d32" stroke-width="1.4"'
    return f'fill="{_FILL.get(node.kind, "#fff")}" stroke="#4a5568" stroke-width="1.4"'


def svg(spec: ProcessSpec, *, highlight: str | None = None) -> str:
    """Draw a process as a standalone SVG document.

    Args:
        spec: The process to draw.
        highlight: A step id to draw emphasized (an instance's current step), or None.

    Returns:
        The SVG markup: a shape per step kind; outcomes, waits, conditions and the target task's
        SLA on the edges; loops drawn in blue, back up the side; `on:` events dashed from an
        "any step" node. Each step is a `<g data-step="...">`; the highlighted one also has the
        class `duly-current` and `aria-current="step"`.
    """
    layout = _Layout(spec)
    marker = f"duly-{spec.process}-arrow"
    colors = {"": "#4a5568", "-any": "#8a94a6", "-error": "#c62828", "-loop": "#2b6cb0"}
    defs = "".join(
        f'<marker id="{marker}{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        for name, color in colors.items()
    )
    body, xs = [], []
    for edge, route in zip(layout.edges, _routes(layout), strict=True):
        kind = "-loop" if edge.back else "-any" if edge.source == ANY else ""
        kind = "-error" if edge.label[:1] == ["error"] else kind
        curves = _curves(route)
        xs += [x for curve in curves for x, _ in curve]
        d = f"M{_n(route[0][0][0])},{_n(route[0][0][1])}" + "".join(
            "C" + " ".join(f"{_n(x)},{_n(y)}" for x, y in curve) for curve in curves
        )
        dash = ' stroke-dasharray="6 4"' if edge.source == ANY else ""
        body.append(
            f'<path d="{d}" fill="none" stroke="{colors[kind]}" stroke-width="1.4"{dash} '
            f'marker-end="url(#{marker}{kind})"/>'
        )
    for node in sorted(layout.nodes.values(), key=lambda n: n.kind == "label"):  # labels on top
        xs += [node.x - node.w / 2, node.x + node.w / 2]
        current = node.key == highlight
        drawn = _shape(node, _paint(node, current)) + _text(node)
        if node.kind == "label":
            body.append(drawn)
        elif node.kind != "dummy":
            name = {START: "start", ANY: "any step"}.get(node.key, node.key)
            classes = f"duly-step duly-{node.kind}" + (" duly-current" if current else "")
            mark = ' aria-current="step"' if current else ""
            body.append(
                f'<g class="{classes}" data-step="{_xml(name)}"{mark}><title>{_xml(name)}</title>'
                f"{drawn}</g>"
            )
    left, width = min(xs) - MARGIN, max(xs) - min(xs) + 2 * MARGIN
    height = max(n.y + n.h / 2 for n in layout.nodes.values()) + MARGIN
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="{_n(left, 0)} 0 {_n(width, 0)} {_n(height, 0)}" '
        f'width="{_n(width, 0)}" height="{_n(height, 0)}" font-family="{_xml(FONT)}" role="img">'
        f"<title>{_xml(spec.title)}</title><defs>{defs}</defs>"
        f'<rect x="{_n(left, 0)}" width="100%" height="100%" fill="#fff"/>{"".join(body)}</svg>\n'
    )


def html_page(spec: ProcessSpec) -> str:
    """A complete offline HTML page: the title, the SVG drawing and its Mermaid source."""
    about = f"process <code>{_xml(spec.process)}</code> · version {spec.version} · calendar "
    about += f"<code>{_xml(spec.calendar)}</code>"
    if spec.team:
        about += f" · team <code>{_xml(spec.team)}</code>"
    if spec.clocks:
        about += " · clocks " + ", ".join(f"<code>{_xml(name)}</code>" for name in spec.clocks)
    description = f"<p>{_xml(spec.description)}</p>\n" if spec.description else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_xml(spec.title)} · duly</title>
<style>body {{ font-family: {FONT}; margin: 2rem; color: #1a202c; }}
.diagram, pre {{ overflow-x: auto; }} pre {{ background: #f6f8fa; padding: 1rem; }}</style>
</head>
<body>
<h1>{_xml(spec.title)}</h1>
<p>{about}</p>
{description}<div class="diagram">
{svg(spec)}</div>
<details>
<summary>Mermaid source</summary>
<pre><code>{_xml(mermaid(spec))}</code></pre>
</details>
</body>
</html>
"""
