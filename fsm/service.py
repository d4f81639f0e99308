"""Which functions the ATM can offer, from the state of its devices."""
from __future__ import annotations

FUNCTIONS = ("withdrawal", "deposit", "balance", "transfer")

# Devices every session needs, and the extra ones each function needs.
ESSENTIAL = ("card_reader", "keypad", "display")
NEEDS = {
    "withdrawal": ("dispenser",),
    "deposit": ("acceptor",),
    "balance": (),
    "transfer": (),
}


def available_functions(devices: dict, min_note: int | None = None) -> list[str]:
    """Functions whose devices are all usable (a dispenser must also hold cash)."""
    if not all(devices[k].usable for k in ESSENTIAL if k in devices):
        return []
    out = []
    for function in FUNCTIONS:
        if not all(k in devices and devices[k].usable for k in NEEDS[function]):
            continue
        if function == "withdrawal" and all(c.status == "empty" for c in devices["dispenser"].cassettes):
            continue
        out.append(function)
    return out


def service_state(functions: list[str]) -> str:
    if not functions:
        return "out_of_service"
    return "in_service" if len(functions) == len(FUNCTIONS) else "degraded"
