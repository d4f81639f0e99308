"""Byte mutation with a seeded ``random.Random``: flips, cuts, insertions, repeats."""

from __future__ import annotations

import random

INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x15, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xF2, 0xFF)


def mutate(rng: random.Random, data: bytes, rounds: int = 0) -> bytes:
    """``data`` with 1-4 (or ``rounds``) random damages."""
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        how = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if how == 0 and out:  # flip one bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif how == 1 and out:  # replace a byte
            out[rng.randrange(len(out))] = rng.choice((rng.randrange(256), rng.choice(INTERESTING)))
        elif how == 2:  # insert bytes
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif how == 3 and out:  # delete a run
            del out[at : at + rng.randint(1, 4)]
        elif how == 4:  # truncate
            del out[at:]
        elif how == 5 and out:  # repeat a slice
            j = rng.randrange(len(out))
            out[at:at] = out[j : j + rng.randint(1, 8)]
        elif how == 6:  # append noise
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:  # swap two bytes
            if len(out) > 1:
                i, j = rng.randrange(len(out)), rng.randrange(len(out))
                out[i], out[j] = out[j], out[i]
    return bytes(out)


def noise(rng: random.Random, most: int = 64) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, most)))
