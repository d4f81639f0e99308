"""The state diagram, drawn from the state table (``fsm.states``): Mermaid, Graphviz dot, SVG.

The table is read in its generic shape, as ``transitions.Machine`` takes it: states are
strings or str-valued Enum members; each transition row is a dict with ``trigger``,
``source`` (a state, a list of states or ``"*"``), ``dest`` (``None`` = internal,
``"="`` = the source) and optional ``conditions`` / ``unless`` (a name, a callable or a
list of them). Internal transitions become notes (Mermaid) or dashed self-loops (dot).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FORMATS = ("mermaid", "dot", "svg", "markdown")
DOC_PATH = "docs/state-diagram.md"


class DiagramError(Exception):
    """The table cannot be drawn, or the drawing tool is missing; one line."""


@dataclass(frozen=True)
class Edge:
    source: str
    dest: str | None  # None: an internal transition
    label: str


def state_name(state: Any) -> str:
    """``"idle"``, ``State.IDLE`` (value ``"idle"``) or ``{"name": "idle"}`` -> ``"idle"``."""
    if isinstance(state, dict):
        state = state.get("name")
    return str(getattr(state, "value", state))


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [getattr(c, "__name__", str(c)) for c in items]


def label(row: Any) -> str:
    """The trigger with its guards: ``host_replied [reply_ok, not is_current_reply]``."""
    guards = _names(row.get("conditions")) + [f"not {n}" for n in _names(row.get("unless"))]
    return f"{row['trigger']} [{', '.join(guards)}]" if guards else str(row["trigger"])


def edges(states: Iterable[Any], transitions: Iterable[Any]) -> tuple[list[str], list[Edge]]:
    """The state names and one edge per (row, source), in table order, duplicates dropped."""
    names = [state_name(s) for s in states]
    known = set(names)
    out: list[Edge] = []
    for number, row in enumerate(transitions, 1):
        if not isinstance(row, dict) or "trigger" not in row or "source" not in row:
            raise DiagramError(f"transition {number}: a row needs a trigger and a source, got {row!r}")
        source = row["source"]
        sources = names if source == "*" else [state_name(s) for s in _listed(source)]
        dest = row.get("dest")
        for src in sources:
            dst = None if dest is None else src if dest == "=" else state_name(dest)
            for s in (src, dst):
                if s is not None and s not in known:
                    raise DiagramError(f"transition {number} ({row['trigger']}): unknown state {s!r}")
            edge = Edge(src, dst, label(row))
            if edge not in out:
                out.append(edge)
    return names, out


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _mermaid_id(name: str) -> str:
    return re.sub(r"\W", "_", name)


def mermaid(states: Iterable[Any], transitions: Iterable[Any], initial: Any = None) -> str:
    """``stateDiagram-v2`` text; ``initial`` defaults to the first state."""
    names, all_edges = edges(states, transitions)
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{n}" as {_mermaid_id(n)}' for n in names if _mermaid_id(n) != n]
    if names:
        lines.append(f"    [*] --> {_mermaid_id(state_name(initial) if initial is not None else names[0])}")
    internal: dict[str, list[str]] = {}
    for e in all_edges:
        if e.dest is None:
            internal.setdefault(e.source, []).append(e.label)
        else:
            lines.append(f"    {_mermaid_id(e.source)} --> {_mermaid_id(e.dest)} : {e.label}")
    for name in names:
        if name in internal:
            lines.append(f"    note right of {_mermaid_id(name)}")
            lines += [f"        internal: {text}" for text in internal[name]]
            lines.append("    end note")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(states: Iterable[Any], transitions: Iterable[Any], initial: Any = None) -> str:
    """Graphviz dot text; internal transitions are dashed self-loops."""
    names, all_edges = edges(states, transitions)
    lines = [
        "digraph atm {",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="sans-serif"];',
        '    edge [fontname="sans-serif", fontsize=10];',
    ]
    lines += [f"    {_q(n)};" for n in names]
    if names:
        lines.append('    "__initial" [shape=point, label=""];')
        lines.append(f'    "__initial" -> {_q(state_name(initial) if initial is not None else names[0])};')
    for e in all_edges:
        if e.dest is None:
            lines.append(f"    {_q(e.source)} -> {_q(e.source)} [label={_q(e.label)}, style=dashed];")
        else:
            lines.append(f"    {_q(e.source)} -> {_q(e.dest)} [label={_q(e.label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(dot_text: str, timeout: float = 60.0) -> str:
    """Render dot text with Graphviz's ``dot`` (Debian package ``graphviz``)."""
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError("svg needs Graphviz's dot, which is not installed (apt-get install graphviz)")
    proc = subprocess.run([exe, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise DiagramError(f"dot failed with exit status {proc.returncode}: {first}")
    return proc.stdout


def markdown(states: Iterable[Any], transitions: Iterable[Any], initial: Any = None) -> str:
    """The page ``docs/state-diagram.md``: the Mermaid diagram and how to regenerate it."""
    return (
        "# State diagram\n\n"
        "Generated from `fsm/states.py` (`STATES`, `TRANSITIONS`) by `agent/diagram.py`; do not edit.\n"
        "After changing the state table, regenerate it with `make diagram`\n"
        f"(`atm diagram --format markdown -o {DOC_PATH}`); `tests/test_diagram.py` fails until then.\n\n"
        "Edge labels are the trigger and, in brackets, its conditions (`not x`: `unless x`). Rows with\n"
        "the same trigger and source are tried in table order. Internal transitions (no state change)\n"
        "are the notes. `atm diagram --format dot` or `--format svg` draws the same graph with Graphviz.\n\n"
        "```mermaid\n" + mermaid(states, transitions, initial) + "```\n"
    )


def render(fmt: str, states: Iterable[Any], transitions: Iterable[Any], initial: Any = None) -> str:
    """The diagram in one of ``FORMATS``."""
    states = list(states)
    if fmt == "mermaid":
        return mermaid(states, transitions, initial)
    if fmt == "dot":
        return dot(states, transitions, initial)
    if fmt == "svg":
        return svg(dot(states, transitions, initial))
    if fmt == "markdown":
        return markdown(states, transitions, initial)
    raise DiagramError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def from_fsm(fmt: str) -> str:
    """The diagram of the ATM's own state table."""
    from fsm import states as table

    return render(fmt, table.STATES, table.TRANSITIONS, getattr(table, "INITIAL", None))
