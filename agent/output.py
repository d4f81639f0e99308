"""What the agent reports: one record per state change, device event,
prompt, video action and telemetry message, sent to any number of sinks
(the CLI printers, the simulated customer, tests)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

Sink = Callable[[dict], None]
log = logging.getLogger(__name__)


class Recorder:
    """Stamps each record with the clock and hands it to the sinks."""

    def __init__(self, clock, keep: bool = True):
        self.clock = clock
        self.sinks: list[Sink] = []
        self.records: list[dict] | None = [] if keep else None

    def __call__(self, type_: str, **fields) -> None:
        record = {"type": type_, "t": self.clock.now(), **fields}
        if self.records is not None:
            self.records.append(record)
        for sink in self.sinks:
            try:
                sink(record)
            except Exception:  # a broken output must never stop the ATM
                log.exception("output sink %r failed on a %s record", sink, type_)

    def of_type(self, type_: str) -> list[dict]:
        return [r for r in self.records or () if r["type"] == type_]


def to_json(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":"))


def describe(r: dict) -> str:
    kind = r["type"]
    if kind == "state":
        return f"state   {r['previous']} -> {r['state']}  ({r['trigger']})"
    if kind == "device":
        extra = {k: v for k, v in r.items() if k not in ("type", "t", "device", "event")}
        return f"device  {r['device']}.{r['event']} {to_json(extra) if extra else ''}".rstrip()
    if kind == "prompt":
        if r.get("action") == "stop":
            return f"prompt  stop {r.get('pattern')} ({r.get('reason')})"
        return f"prompt  {r['prompt']} [{r['language']}]" + (
            f" {r['pattern']} #{r['repeat']}" if r.get("pattern") else ""
        )
    if kind == "video":
        return f"video   {r['action']} {r.get('path', '')}".rstrip()
    if kind == "telemetry":
        return f"telemetry {r['topic']} {to_json(r['payload'])}"
    if kind == "card":  # only ever the masked number
        return (
            f"card    {r['masked']} ({r['source']}, {r.get('label') or 'no label'}, country {r.get('country') or '?'})"
        )
    rest = {k: v for k, v in r.items() if k not in ("type", "t")}
    return f"{kind:<7} {to_json(rest)}"


def human_line(record: dict, wall: bool = False) -> str:
    """One readable line; ``wall`` prints the time of day instead of clock seconds."""
    if wall:
        now = datetime.now()
        return f"{now:%H:%M:%S}.{now.microsecond // 1000:03d}  {describe(record)}"
    return f"{record['t']:10.3f}  {describe(record)}"


def rounded(record: dict) -> dict:
    """The record with its time to the millisecond, for printing."""
    return {**record, "t": round(record["t"], 3)}
