"""``atm prompts``, ``atm emulate``, ``atm emulator`` and ``atm diagram``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.cli.common import RIG_HELP, UsageError, ask_agent, load_config


# -- atm prompts ---------------------------------------------------------------
def cmd_prompts(args) -> int:
    """Render every prompt of every language into the WAV cache (a child process)."""
    from agent.prompts import Catalogue, PromptCache

    cfg = load_config(args.config)
    cache = PromptCache(cfg.speech["cache_dir"] or None, Catalogue.load(), timeout=cfg.speech["render_timeout"])
    if args.force:
        cache.forget()
    report = cache.warm()
    print(
        f"speech cache {cache.directory}: {len(report.rendered)} rendered, {report.cached} cached,"
        f" {len(report.failed)} failed ({report.seconds:.2f} s)"
    )
    for entry, reason in sorted(report.failed.items()):
        print(f"  failed {entry}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


# -- atm emulate ---------------------------------------------------------------
def cmd_emulate(args) -> int:
    from hw_mocks.emulate import EmulateError, serve

    try:
        return serve(args.device, faults=args.fault or [], timing=args.timing, commands=sys.stdin, out=sys.stdout)
    except EmulateError as exc:
        raise UsageError(str(exc)) from None


def cmd_emulator(args) -> int:
    """One console command to an emulator inside the running agent (a ``+emu`` device)."""
    cfg = load_config(args.config, rig=args.rig)
    answer = ask_agent(cfg, "emulator", {"device": args.device, "line": " ".join(args.words)}, journal=args.journal)
    if answer is None:
        raise UsageError(
            f"no agent is running for ATM {cfg.atm_id}; `atm emulate` serves an emulator of its own on a pty"
        )
    print(json.dumps(answer, ensure_ascii=False) if args.json else f"{args.device}: {answer['answer'] or 'ok'}")
    return 0


# -- atm diagram ---------------------------------------------------------------
def cmd_diagram(args) -> int:
    """The state diagram from fsm.states, to stdout or ``-o FILE``."""
    from agent.diagram import DiagramError, from_fsm

    try:
        text = from_fsm(args.format)
    except DiagramError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def register(sub) -> None:
    prompts = sub.add_parser("prompts", help="voice prompts: `atm prompts build` renders the WAV cache")
    prompts.add_argument("action", choices=("build",))
    prompts.add_argument("--config", help="TOML config file (speech.cache_dir, speech.render_timeout)")
    prompts.add_argument("--force", action="store_true", help="render everything again")
    prompts.set_defaults(func=cmd_prompts)

    emulate = sub.add_parser("emulate", help="serve one device emulator on a new pty (prints its path first)")
    emulate.add_argument("device", choices=("lcdm2000", "ict3q8"))
    emulate.add_argument("--fault", action="append", metavar="NAME", help="start with this fault present")
    emulate.add_argument("--timing", action="store_true", help="keep real baud-rate timing")
    emulate.set_defaults(func=cmd_emulate)

    emulator = sub.add_parser(
        "emulator", help="a console command to an emulated device of the running agent (e.g. clear-jam)"
    )
    emulator.add_argument("device", help="an emulated device: card_reader or dispenser on the sim rig")
    emulator.add_argument("words", nargs="+", metavar="COMMAND", help="as atm emulate's console: help lists them")
    emulator.add_argument("--config", help="TOML config file")
    emulator.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    emulator.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")
    emulator.add_argument("--json", action="store_true")
    emulator.set_defaults(func=cmd_emulator)

    from agent.diagram import FORMATS

    diagram = sub.add_parser("diagram", help="the state diagram, drawn from the state table")
    diagram.add_argument("--format", choices=FORMATS, default="mermaid", help="default: mermaid")
    diagram.add_argument("-o", "--output", metavar="FILE", help="write there (default: stdout)")
    diagram.set_defaults(func=cmd_diagram)
