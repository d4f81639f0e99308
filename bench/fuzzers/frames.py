"""Malformed serial frames (LCDM-2000, ICT3Q8), TLV byte strings and EMV card answers.

Each generator takes a ``random.Random`` and returns one input. Structure-aware
inputs start from a valid frame or object and damage it where a parser looks:
the length field, the checksum (BCC, CRC), the ETX, a count, the nesting.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

from bench.fuzzers.mutate import mutate, noise
from devices import ict3q8_codec as ict
from devices import lcdm_codec as lcdm
from devices import tlv

# LCDM-2000 -------------------------------------------------------------------------
LCDM_COMMANDS = tuple(lcdm.LCDM2000.lengths)


def lcdm_reply(rng: random.Random) -> lcdm.Reply:
    """A random reply a real LCDM-2000 could send."""
    command = rng.choice(LCDM_COMMANDS)
    error = rng.choice((lcdm.GOOD, lcdm.NORMAL_STOP, rng.randrange(0x30, 0x50)))
    if command == lcdm.STATUS:
        names = list(lcdm.CHECK_SENSORS.values())
        return lcdm.Reply(command, error, sensors=frozenset(rng.sample(names, rng.randint(0, 4))))
    if command == lcdm.ROM_VERSION:
        return lcdm.Reply(command, lcdm.GOOD, version="".join(rng.choice("V0123456789.") for _ in range(4)))
    if command == lcdm.PURGE:
        return lcdm.Reply(command, error)
    counts = []
    for position in lcdm.LCDM2000.dispense_positions(command):
        check = rng.randint(0, 60)
        out = rng.randint(0, check)
        counts.append(lcdm.CassetteCount(position, check, out, rng.randint(0, check - out), rng.random() < 0.2))
    return lcdm.Reply(command, error, counts=tuple(counts))


def _fix_bcc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([lcdm.bcc(frame[:-1])])


def lcdm_device_bytes(rng: random.Random) -> bytes:
    """Bytes from the dispenser: a damaged reply, several, or noise."""
    frame = lcdm.encode_reply(lcdm_reply(rng))
    how = rng.randrange(8)
    if how == 0:
        return noise(rng)
    if how == 1:  # damaged, then the BCC made right again: the parser must look inside
        return _fix_bcc(mutate(rng, frame, 1)) if len(frame) > 1 else frame
    if how == 2:  # wrong BCC
        return frame[:-1] + bytes([frame[-1] ^ rng.randint(1, 255)])
    if how == 3:  # another command byte, the right BCC: the wrong length for it
        return _fix_bcc(frame[:3] + bytes([rng.randrange(256)]) + frame[4:])
    if how == 4:  # truncated
        return frame[: rng.randrange(len(frame))]
    if how == 5:  # back to back, one damaged
        return frame + mutate(rng, lcdm.encode_reply(lcdm_reply(rng)))
    if how == 6:  # a count that is not two digits, BCC right
        i = rng.randrange(4, len(frame) - 2)
        return _fix_bcc(frame[:i] + bytes([rng.randrange(256)]) + frame[i + 1 :])
    return mutate(rng, frame)


def lcdm_host_bytes(rng: random.Random) -> bytes:
    """Bytes from the host: a damaged command frame."""
    plan = {p: rng.randint(1, 60) for p in rng.sample(lcdm.LCDM2000.positions, rng.randint(1, 2))}
    test = len(plan) == 1 and rng.random() < 0.3
    frame = rng.choice((lcdm.dispense_command(plan, test=test), lcdm.encode_command(lcdm.STATUS)))
    return mutate(rng, frame) if rng.random() < 0.9 else noise(rng)


def lcdm_dispense_plan(rng: random.Random) -> object:
    """What a caller might hand ``dispense_command``: good, odd and wrong plans."""
    keys = ("upper", "lower", "middle", "", "UPPER", None, 1)
    values = (0, 1, 60, 61, -1, 1.5, "5", True, None, 10**30)
    if rng.random() < 0.1:
        return rng.choice((None, [], "upper", 5, ("upper", 1)))
    return {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(0, 3))}


# ICT3Q8 ----------------------------------------------------------------------------
ICT_COMMANDS = (ict.INITIALISE, ict.STATUS, ict.MOVE, ict.LED, ict.READ_TRACK, ict.ENTRY, ict.IC)


def ict_reply(rng: random.Random) -> ict.Reply:
    cm, pm = rng.choice(ICT_COMMANDS), rng.randrange(0x30, 0x3A)
    if rng.random() < 0.7:
        data = bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randint(0, 110)))
        return ict.Reply(cm, pm, True, position=rng.choice(("none", "gate", "inside")), data=data)
    return ict.Reply(cm, pm, False, error="".join(rng.choice("0123456789ABCDEF") for _ in range(2)))


def _fix_crc(frame: bytes) -> bytes:
    return frame[:-2] + ict.crc16(frame[:-2]).to_bytes(2, "big")


def ict_device_bytes(rng: random.Random) -> bytes:
    frame = ict.encode_reply(ict_reply(rng))
    how = rng.randrange(8)
    if how == 0:
        return noise(rng)
    if how == 1:  # damaged, CRC right again
        return _fix_crc(mutate(rng, frame, 1)) if len(frame) > 2 else frame
    if how == 2:  # wrong CRC
        return frame[:-1] + bytes([frame[-1] ^ rng.randint(1, 255)])
    if how == 3:  # a huge or wrong length field
        size = rng.choice((0, 1, 2, 3, 0xFFFF, ict.MAX_LEN + 1, rng.randrange(0x10000)))
        return _fix_crc(frame[:1] + size.to_bytes(2, "big") + frame[3:])
    if how == 4:
        return frame[: rng.randrange(len(frame))]
    if how == 5:
        return frame + mutate(rng, ict.encode_reply(ict_reply(rng)))
    if how == 6:  # another type byte, CRC right
        return _fix_crc(frame[:3] + bytes([rng.choice((0x43, 0x50, 0x4E, rng.randrange(256)))]) + frame[4:])
    return mutate(rng, frame)


def ict_host_bytes(rng: random.Random) -> bytes:
    frame = ict.encode_command(rng.choice(ICT_COMMANDS), rng.randrange(0x30, 0x3A), noise(rng, 8))
    return mutate(rng, frame)


# TLV -------------------------------------------------------------------------------
TAGS = (0x4F, 0x50, 0x57, 0x5A, 0x82, 0x87, 0x88, 0x94, 0x9F38, 0x5F24, 0x5F2D, 0x9F4D, 0xBF0C)
TEMPLATES = (0x6F, 0xA5, 0x70, 0x61, 0x77, 0xBF0C)


def tlv_object(rng: random.Random, depth: int = 0) -> bytes:
    """One valid BER-TLV object, nested at most 4 deep."""
    if depth < 4 and rng.random() < 0.4:
        inner = b"".join(tlv_object(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return tlv.encode(rng.choice(TEMPLATES), inner)
    return tlv.encode(rng.choice(TAGS), noise(rng, rng.choice((8, 40, 300))))


def tlv_bytes(rng: random.Random) -> bytes:
    """Damaged TLV: flipped bytes, huge or truncated lengths, deep nesting, padding."""
    data = b"".join(tlv_object(rng) for _ in range(rng.randint(1, 3)))
    how = rng.randrange(7)
    if how == 0:
        return noise(rng, 80)
    if how == 1:  # a huge length field
        big = rng.choice((b"\x83\xff\xff\xff", b"\x84\xff\xff\xff\xff", b"\x80", b"\x82\xff\xff", b"\x89" + bytes(9)))
        return bytes([rng.choice(TAGS) & 0xFF]) + big + data
    if how == 2:  # nested far deeper than any card
        depth = rng.choice((17, 40, 300))
        out = b"\x5a\x01\x00"
        for _ in range(depth):
            out = tlv.encode(0x70, out) if len(out) < 0xFFFFFF else out
        return out
    if how == 3:  # a tag that never ends
        return b"\x9f" + b"\xff" * rng.randint(1, 8) + data
    if how == 4:  # padding around everything
        return b"\x00\xff" * rng.randint(0, 4) + data + b"\x00" * rng.randint(0, 4)
    return mutate(rng, data)


# EMV cards -------------------------------------------------------------------------
Transmit = Callable[[bytes], tuple[bytes, int, int]]
SW_WORDS = (0x9000, 0x6A82, 0x6A83, 0x6283, 0x6A81, 0x6985, 0x61FF, 0x6110, 0x6C10, 0x6D00, 0x6F00)
AID = bytes.fromhex("A0000000031010")


def _good_answers(rng: random.Random) -> dict[int, list[bytes]]:
    """Valid answers of a plain card, by INS: SELECT (A4), GPO (A8), READ RECORD (B2)."""
    pdol = tlv.encode(0x9F38, bytes.fromhex("9F0206 9F1A02 9A03 9F3704"))
    fci = tlv.encode(0x6F, tlv.encode(0x84, AID) + tlv.encode(0xA5, tlv.encode(0x50, b"VISA") + pdol))
    afl = bytes([1 << 3, 1, rng.randint(1, 3), 0])
    gpo = tlv.encode(0x77, tlv.encode(0x82, b"\x19\x80") + tlv.encode(0x94, afl))
    pan = bytes.fromhex("4111111111111111")
    record = tlv.encode(
        0x70,
        tlv.encode(0x5A, pan)
        + tlv.encode(0x5F24, bytes.fromhex("301231"))
        + tlv.encode(0x57, bytes.fromhex("4111111111111111D3012201"))
        + tlv.encode(0x5F28, bytes.fromhex("0392")),
    )
    return {0xA4: [fci], 0xA8: [gpo], 0xB2: [record]}


def emv_card(rng: random.Random) -> Transmit:
    """A card whose every answer may be damaged: the data, the status word, the type."""
    answers = _good_answers(rng)
    seed = rng.randrange(1 << 30)

    def transmit(apdu: bytes) -> tuple[bytes, int, int]:
        r = random.Random(seed ^ zlib.crc32(apdu))
        ins = apdu[1] if len(apdu) > 1 else 0
        data = r.choice(answers.get(ins, [b""]))
        if r.random() < 0.5:
            data = tlv_bytes(r) if r.random() < 0.3 else mutate(r, data)
        sw = 0x9000 if r.random() < 0.7 else r.choice(SW_WORDS)
        if ins == 0xA4 and apdu[5:19] == b"1PAY.SYS.DDF01" and r.random() < 0.7:
            return b"", 0x6A, 0x82  # most cards here have no PSE
        if r.random() < 0.02:
            return r.choice(((None, 0x90, 0), (b"", 300, 0), (b"", 0x90, -1), ("6F", 0x90, 0)))  # type: ignore[return-value]
        return data, sw >> 8, sw & 0xFF

    return transmit
