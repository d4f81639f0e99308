"""``atm status`` as a field engineer reads it: one screen, the live agent's or the devices'.

The report is the agent's ``status`` answer (with ``agent: running``) or, with no agent
running, what ``atm status`` found by opening the devices itself (``agent: not running``).
"""

from __future__ import annotations

from typing import Any

from agent.tables import table

# A fault's suggested action (XFS4IoT's, see devices.base.Action) as the command that does it.
# Some fault codes have a command of their own (ours).
ACTION_HINTS = {
    "reset": "atm service out, then atm exercise {device} reset",
    "clear": "clear the cause, then atm exercise {device} reset",
    "replenish": "atm cash replenish CASSETTE --count N",
    "maintenance": "call maintenance; atm trace {device} shows the line",
    "configuration": "check devices.{device} in the config",
    "softwareError": "atm logs; report it",
}
CODE_HINTS = {
    "port_busy": "another process holds the port (fuser -v PORT): stop it, or ask the agent that holds it",
    "count_unknown": "count the cassettes, then atm cash reconcile --counted A=N,B=M",
}


def hint(device: str, fault: dict[str, Any]) -> str:
    """What the engineer does about ``fault``: the command for its suggested action."""
    text = CODE_HINTS.get(fault["code"]) or ACTION_HINTS.get(fault.get("action", ""), "")
    return text.format(device=device)


def status_text(report: dict[str, Any]) -> str:
    parts = [_headline(report)]
    if report["agent"] == "running":
        parts += [_session_line(report.get("session")), _link_line(report.get("link") or {})]
    parts += ["", _devices(report["devices"]), "", _cassettes(report["cassettes"])]
    return "\n".join(parts)


def _headline(report: dict[str, Any]) -> str:
    functions = ", ".join(report["functions"]) or "no functions"
    if report["agent"] != "running":
        counts = "the journal's" if report.get("counts_from") == "journal" else "the config's (no journal yet)"
        return (
            f"ATM {report['atm_id']} (not running; devices opened by this command):"
            f" {report['service']} ({functions}) on rig {report['rig']}; cassette counts: {counts}"
        )
    held = f", held: {report['hold_reason'] or 'by request'}" if report["held"] else ""
    versions = report.get("versions") or {}
    up = f"up {_duration(report['uptime_s'])}, " if "uptime_s" in report else ""
    return (
        f"ATM {report['atm_id']} (running, {up}agent {versions.get('agent', '?')}):"
        f" {report['state']}, {report['service']} ({functions}){held}"
    )


def _session_line(session: dict[str, Any] | None) -> str:
    if not session:
        return "session: none"
    function = session["function"] or "(choosing)"
    return f"session: {session['id']} {function}, state {session['state']} for {session['age_s']:g} s"


def _link_line(link: dict[str, Any]) -> str:
    if link.get("transport") != "mqtt":
        return f"telemetry: {link.get('transport', 'unknown')}"
    where = (
        f"connected to {link['broker']}" if link["connected"] else "not connected (" + ", ".join(link["brokers"]) + ")"
    )
    backlog = "unknown" if link["backlog"] is None else link["backlog"]
    return f"telemetry: {where}; backlog {backlog}; last ack {link['last_ack'] or 'never'}"


def _devices(devices: dict[str, Any]) -> str:
    rows = []
    for kind, d in devices.items():
        rows.append([kind, d["status"], d.get("locator", ""), ""])
        for f in d["faults"]:
            rows.append(["", f"  {f['code']}", f["message"], hint(kind, f)])
    return table(("device", "status", "locator / fault", "action"), rows)


def _cassettes(cassettes: list[dict[str, Any]]) -> str:
    headers = ("cassette", "denomination", "count", "status", "low", "empty", "accuracy")
    rows = [
        [c["id"], c["denomination"], c["count"], c["status"], c.get("low"), c.get("empty"), c["accuracy"]]
        for c in cassettes
    ]
    return table(headers, rows)


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{s:02d}s"
