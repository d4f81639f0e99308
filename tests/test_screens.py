"""The screens' texts: every screen of the state machine has its text in every language,
reads as words (never as Python prints a value), and the flows show only those screens."""

from __future__ import annotations

import ast
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from agent.prompts import ASSETS_DIR, Catalogue, PromptError
from agent.scenarios import SCENARIOS, ScenarioRun
from fsm.screens import REASONS, SCREENS
from fsm.service import FUNCTIONS
from tests.helpers import make_agent

LANGUAGES = ("ja", "en", "zh", "ko")
FSM = Path(__file__).resolve().parents[1] / "fsm"
# What Python shows of a value, or of a name, that no customer should read.
PYTHON_LOOK = re.compile(r"[\[\]{}'_]|None|True|False")
# One example value for every field a screen carries.
EXAMPLE_FIELDS = {
    "reason": "insufficient_funds",
    "tries_left": 2,
    "options": list(FUNCTIONS),
    "languages": list(LANGUAGES),
    "language": "en",
    "function": "withdrawal",
    "amount": 30000,
    "balance": 1234567,
}


def example_fields(screen: str) -> dict:
    return {name: EXAMPLE_FIELDS[name] for name in SCREENS[screen]}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(ASSETS_DIR)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_language_file_has_every_screen_with_a_title(lang):
    data = tomllib.loads((Path(str(ASSETS_DIR)) / f"{lang}.toml").read_text(encoding="utf-8"))
    screens = data.get("screens", {})
    assert sorted(screens) == sorted(SCREENS)
    for screen, table in screens.items():
        assert table.get("title", "").strip(), (lang, screen)
        assert all(line.strip() for line in table.get("lines", [])), (lang, screen)
    assert sorted(data.get("reasons", {})) == sorted(REASONS)
    assert sorted(data.get("functions", {})) == sorted(FUNCTIONS)


@pytest.mark.parametrize("screen", sorted(SCREENS))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_reads_as_words_in_every_language(catalogue, lang, screen):
    text = catalogue.screen_text(screen, lang, example_fields(screen))
    lines = text.split("\n")
    assert len(lines) >= 1 and all(line.strip() for line in lines), text
    assert not PYTHON_LOOK.search(text), text


def test_the_menu_shows_each_function_and_each_language_by_its_own_name(catalogue):
    for lang in LANGUAGES:
        text = catalogue.screen_text("menu", lang, example_fields("menu"))
        for function in FUNCTIONS:
            assert catalogue.function_label(function, lang) in text.split("\n"), (lang, function)
        for other in LANGUAGES:
            assert catalogue.language(other).name in text, (lang, other)
    en = catalogue.screen_text("menu", "en", example_fields("menu"))
    assert "Withdrawal" in en and "日本語" in en and "withdrawal" not in en


def test_amounts_are_money_in_the_customers_language(catalogue):
    fields = {"amount": 30000}
    assert "30,000円" in catalogue.screen_text("confirm_deposit", "ja", fields)
    assert "¥30,000" in catalogue.screen_text("confirm_deposit", "en", fields)
    balance = catalogue.screen_text("take_card", "en", {"balance": 1234567})
    assert "¥1,234,567" in balance
    assert len(catalogue.screen_text("take_card", "en", {})) < len(balance)  # no balance line without one


def test_a_reason_nobody_wrote_text_for_is_left_out_not_shown_raw(catalogue):
    known = catalogue.screen_text("declined", "en", {"reason": "insufficient_funds"})
    unknown = catalogue.screen_text("declined", "en", {"reason": "mystery_code"})
    assert "mystery" not in unknown and len(unknown) < len(known)


def test_a_catalogue_without_a_screen_names_it(tmp_path):
    target = tmp_path / "cat"
    shutil.copytree(ASSETS_DIR, target)
    path = target / "ko.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index("[screens.insert_notes]")
    end = text.index("\n[", start + 1)
    path.write_text(text[:start] + text[end + 1 :], encoding="utf-8")
    with pytest.raises(PromptError) as err:
        Catalogue.load(target)
    assert str(err.value) == "ko.toml: screens.insert_notes: missing screen"


def test_a_line_naming_a_field_the_screen_does_not_have_is_refused(tmp_path):
    target = tmp_path / "cat"
    shutil.copytree(ASSETS_DIR, target)
    path = target / "en.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index("[screens.welcome]")
    path.write_text(text[:start] + text[start:].replace("lines = [", 'lines = ["{amount}", ', 1), encoding="utf-8")
    with pytest.raises(PromptError, match=r"en.toml: screens.welcome.lines: .*amount"):
        Catalogue.load(target)


def _shown_screens() -> set[str]:
    """Every screen id the flows and the ATM pass to ``show`` as a literal."""
    shown = set()
    for path in FSM.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("show", "_wait_for_taking"):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    shown.add(node.args[0].value)
    return shown


def test_the_flows_show_only_declared_screens():
    shown = _shown_screens() - {"prompt"}  # the prompter's fallback: a prompt's own text
    assert "menu" in shown and "take_cash" in shown
    assert shown <= set(SCREENS), shown - set(SCREENS)
    assert set(SCREENS) <= shown, set(SCREENS) - shown  # and no screen is declared for nothing


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_screen_of_a_scenario_shows_python(name):
    scenario = SCENARIOS[name]
    agent = make_agent(scenario.config)
    agent.warm_prompts()
    ScenarioRun(scenario, agent).run()
    screens = list(agent.devices["display"].screens)
    assert screens
    for shown in screens:
        assert shown["text"].strip(), shown
        assert not PYTHON_LOOK.search(shown["text"]), shown
