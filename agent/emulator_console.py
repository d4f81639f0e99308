"""The console of an emulator inside the running agent (``atm emulator DEVICE COMMAND``).

A rig whose devices are ``+emu`` (the shipped ``sim`` rig) runs the real drivers against
emulators in the agent's own process; this reaches their console, the one ``atm emulate``
reads on its standard input: inject or clear a fault, take the notes, clear a jam by hand.
It is a rig's tool, for hardware-in-the-loop tests and demonstrations: on a real device
there is no emulator, and the command is refused.
"""

from __future__ import annotations

from typing import Any

from agent.remote import BadRequest
from devices.deviceset import DeviceSet


def emulator_console(devices: DeviceSet, args: dict[str, Any]) -> dict[str, Any]:
    """Carry out one console line on ``args["device"]``'s emulator; its answer."""
    from hw_mocks.emulate import answer

    kind = args["device"]
    device = devices[kind]
    emulator = getattr(device, "emulator", None)  # the +emu backends hold theirs
    if emulator is None:
        raise BadRequest("bad_field", f"devices.{kind} ({device.locator}) is not emulated: no emulator console")
    said = answer(emulator, args["line"])
    if said.startswith("error: "):
        raise BadRequest("bad_field", f"{kind} emulator: {said.removeprefix('error: ')}")
    return {"device": kind, "answer": said.removeprefix("ok").strip()}
