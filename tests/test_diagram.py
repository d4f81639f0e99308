"""The state diagram: generated from the table, and docs/state-diagram.md kept in step."""

from __future__ import annotations

import collections.abc
import enum
import shutil
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent import diagram
from agent.cli import main
from fsm.atm import ATM
from fsm.states import STATES, TRANSITIONS

ROOT = Path(__file__).resolve().parent.parent


class S(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    DONE = "done"


TABLE = [
    dict(trigger="go", source=S.IDLE, dest=S.BUSY, conditions="ready"),
    dict(trigger="go", source=S.IDLE, dest=None, unless=["ready", "awake"]),
    dict(trigger="stop", source=[S.IDLE, S.BUSY], dest="done"),
    dict(trigger="stop", source=["idle"], dest="done"),  # the same edge again: drawn once
    dict(trigger="poke", source="*", dest="="),
]


def test_the_doc_matches_the_state_table():
    doc = (ROOT / diagram.DOC_PATH).read_text(encoding="utf-8")
    assert doc == diagram.from_fsm("markdown"), (
        f"{diagram.DOC_PATH} is out of date with fsm/states.py: run `make diagram`"
    )


def test_every_transition_row_of_the_table_is_drawn():
    text = diagram.from_fsm("mermaid")
    for row in TRANSITIONS:
        assert diagram.label(row) in text, row
    for state in STATES:
        assert diagram.state_name(state) in text


def test_mermaid_of_an_enum_table_with_guards_lists_and_internal_notes():
    assert diagram.mermaid(S, TABLE).splitlines() == [
        "stateDiagram-v2",
        "    [*] --> idle",
        "    idle --> busy : go [ready]",
        "    idle --> done : stop",
        "    busy --> done : stop",
        "    idle --> idle : poke",
        "    busy --> busy : poke",
        "    done --> done : poke",
        "    note right of idle",
        "        internal: go [not ready, not awake]",
        "    end note",
    ]


def test_state_names_that_are_not_identifiers_get_an_alias():
    text = diagram.mermaid(["out of service", "idle"], [dict(trigger="fix", source="out of service", dest="idle")])
    assert 'state "out of service" as out_of_service' in text
    assert "out_of_service --> idle : fix" in text


def test_dot_draws_internal_transitions_as_dashed_loops():
    text = diagram.dot(S, TABLE)
    assert text.startswith("digraph atm {") and text.rstrip().endswith("}")
    assert '"idle" -> "busy" [label="go [ready]"];' in text
    assert '"idle" -> "idle" [label="go [not ready, not awake]", style=dashed];' in text


@pytest.mark.parametrize(
    "row, message",
    [
        (dict(trigger="go", source="nowhere", dest="idle"), "transition 1 (go): unknown state 'nowhere'"),
        (dict(trigger="go", source="idle", dest="nowhere"), "transition 1 (go): unknown state 'nowhere'"),
        (dict(source="idle", dest="busy"), "transition 1: a row needs a trigger and a source"),
    ],
)
def test_a_bad_row_is_a_one_line_error(row, message):
    with pytest.raises(diagram.DiagramError) as err:
        diagram.mermaid(S, [row])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_cli_writes_the_diagram_to_a_file(tmp_path, capsys):
    out = tmp_path / "fsm.mmd"
    assert main(["diagram", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == diagram.from_fsm("mermaid")
    assert main(["diagram", "--format", "dot"]) == 0
    assert capsys.readouterr().out == diagram.from_fsm("dot")


def test_cli_refuses_an_unknown_format(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["diagram", "--format", "png"])
    assert exc.value.code == 2
    assert "invalid choice: 'png'" in capsys.readouterr().err


def test_svg_without_dot_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["diagram", "--format", "svg"]) == 2
    err = capsys.readouterr().err
    assert err == "atm: error: svg needs Graphviz's dot, which is not installed (apt-get install graphviz)\n"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_is_drawn_by_dot(capsys):
    assert main(["diagram", "--format", "svg"]) == 0
    out = capsys.readouterr().out
    root = ET.fromstring(out)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {diagram.state_name(s) for s in STATES} <= texts


def test_the_model_declares_exactly_the_triggers_of_the_table():
    """fsm.atm.ATM annotates each trigger transitions adds to it, so mypy sees the calls."""
    hints = typing.get_type_hints(ATM)
    declared = {name for name, hint in hints.items() if typing.get_origin(hint) is collections.abc.Callable}
    assert declared == {row["trigger"] for row in TRANSITIONS}
