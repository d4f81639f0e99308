"""``atm trace DEVICE`` and ``atm logs``: what the running agent streams on its control socket.

Both print the recent entries the agent keeps (``--lines``) and, with ``--follow``, each
new one until Ctrl-C; ``--json`` prints each entry as one JSON object a line, and a line
``{"dropped": N}`` where N entries were lost because this end read too slowly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from agent.cli.common import UsageError, control_path, load_config, say
from agent.control.protocol import MAX_LINES
from devices.registry import DEVICE_KINDS

HEX_WIDTH = 32  # the hex column (a longer frame's hex pushes its fields along)


def _lines(text: str) -> int:
    try:
        lines = int(text)
    except ValueError:
        lines = 0
    if not 1 <= lines <= MAX_LINES:
        raise UsageError(f"--lines: {text!r} is not a number of lines from 1 to {MAX_LINES}")
    return lines


def _stream(args, method: str, params: dict[str, Any], nobody: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The agent's answer, then its notifications; one line and exit 2 when it refuses or
    no agent runs (``nobody`` says what then)."""
    from agent.control.client import ControlRefused, ControlSilent, ControlUnavailable, call, follow

    cfg = load_config(args.config)
    path = control_path(cfg, args.journal)
    missing = f"no agent is running for ATM {cfg.atm_id} (control socket {path or 'none: the journal is in memory'})"
    if not path:
        raise UsageError(f"{missing}; {nobody}")
    try:
        if not args.follow:
            yield "result", call(path, method, params, timeout=5.0)
            return
        yield from follow(path, method, {**params, "follow": True}, timeout=5.0)
    except ControlUnavailable:
        raise UsageError(f"{missing}; {nobody}") from None
    except ControlSilent as exc:
        raise UsageError(str(exc)) from None
    except ControlRefused as exc:
        raise UsageError(f"{method}: {exc} ({exc.error})") from None


NOUNS = {"trace": "frames", "logs": "lines"}


def _print_stream(stream: Iterator[tuple[str, dict[str, Any]]], method: str, as_json: bool, text) -> int:
    for kind, body in stream:
        if kind == "result":
            for entry in body.get("entries", []):
                say(json.dumps(entry, ensure_ascii=False) if as_json else text(entry))
            if not body.get("follow"):
                return 0
        elif kind == "dropped":
            count = body.get("count", 0)
            lost = f"-- {count} {NOUNS[method]} dropped: this end read too slowly --"
            say(json.dumps({"dropped": count}) if as_json else lost)
        elif kind == method:
            say(json.dumps(body, ensure_ascii=False) if as_json else text(body))
    say(f"atm: the agent closed the {method} stream (it stopped)", sys.stderr)
    return 1


def _clock(entry: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(float(entry.get("time", 0)))
    return f"{when:%H:%M:%S}.{when.microsecond // 1000:03d}"


# -- atm trace -------------------------------------------------------------------------
def frame_text(entry: dict[str, Any]) -> str:
    """One frame as a line: time, direction, hex, and what the frame says."""
    return f"{_clock(entry)}  {entry.get('direction', '?'):<12}  {entry.get('hex', ''):<{HEX_WIDTH}}  {_says(entry)}"


def _says(entry: dict[str, Any]) -> str:
    frame = dict(entry.get("frame") or {})
    kind = frame.pop("kind", "?")
    if kind in ("ack", "nak"):
        return kind.upper()
    if kind not in ("command", "reply"):
        return f"{kind}: {frame.get('problem', '')}".rstrip(": ")
    words = [f"{frame.pop('command', '?')} {kind}"]
    if "error" in frame:
        meaning = frame.pop("meaning", "")
        words.append(f"error {frame.pop('error')}" + (f" ({meaning})" if meaning else ""))
    for name, cassette in (frame.pop("counts", None) or {}).items():
        words.append(f"{name}: {cassette['check']} picked, {cassette['exit']} out, {cassette['rejects']} rejected")
    for key, value in frame.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(map(str, value)) or "none"
        words.append(f"{key} {value}")
    return ", ".join(words)


def cmd_trace(args) -> int:
    if args.device not in DEVICE_KINDS:
        raise UsageError(f"unknown device {args.device!r} (devices: {', '.join(DEVICE_KINDS)})")
    params = {"device": args.device, "lines": _lines(args.lines)}
    nobody = "a trace is of a live driver (start the agent: atm run)"
    stream = _with_device(_stream(args, "trace", params, nobody), args.device)
    return _print_stream(stream, "trace", args.json, frame_text)


def _with_device(stream: Iterator[tuple[str, dict[str, Any]]], device: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each frame names its device (for --json)."""
    for kind, body in stream:
        if kind == "result":
            body = {**body, "entries": [{"device": device, **e} for e in body.get("entries", [])]}
        elif kind == "trace":
            body = {"device": device, **body}
        yield kind, body


# -- atm logs --------------------------------------------------------------------------
def log_text(entry: dict[str, Any]) -> str:
    """One line as ``atm run`` prints it: the time, then a log record's level and logger, or an event."""
    if entry.get("source") == "log":
        return f"{_clock(entry)}  {entry.get('level', '')} {entry.get('name', '')}: {entry.get('text', '')}"
    return f"{_clock(entry)}  {entry.get('text', '')}"


def cmd_logs(args) -> int:
    params = {"lines": _lines(args.lines)}
    nobody = "under systemd its past lines are in journalctl -u atm-agent"
    return _print_stream(_stream(args, "logs", params, nobody), "logs", args.json, log_text)


def _common(parser, what: str, default: int) -> None:
    parser.add_argument("--follow", "-f", action="store_true", help=f"then print each new {what} until Ctrl-C")
    parser.add_argument(
        "--lines", "-n", default=str(default), metavar="N", help=f"recent {what}s to print first (1-{MAX_LINES})"
    )
    parser.add_argument("--json", action="store_true", help=f"one JSON object a {what}")
    parser.add_argument("--config", help="TOML config file (where its agent's socket is)")
    parser.add_argument("--journal", metavar="FILE", help="the running agent's journal, if atm run was given one")


def register(sub) -> None:
    trace = sub.add_parser("trace", help="the serial frames of a device of the running agent, decoded")
    trace.add_argument("device", metavar="DEVICE", help="a serial device (on the sim rig: card_reader, dispenser)")
    _common(trace, "frame", 20)
    trace.set_defaults(func=cmd_trace)

    logs = sub.add_parser("logs", help="the running agent's recent log and event lines")
    _common(logs, "line", 50)
    logs.set_defaults(func=cmd_logs)
