"""The input fuzzers (bench/fuzzers): codecs, TLV, EMV card answers, configs and rigs.

Only the documented error type may escape: ProtocolError, TlvError,
ChipReadError, ConfigError, RigError. The ``atm`` command, given a
malformed config or rig, exits 2 with exactly one line on stderr; a sample of
generated files, every named case of issue 11 item 8 among them, is run
through it as a child process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from bench.fuzzers import documents
from bench.fuzzers.targets import TARGETS, run_target

ATM = os.path.join(os.path.dirname(sys.executable), "atm")
QUICK = {"config": 600, "rig": 600}  # file targets are slower; the rest take 3000 each
NO_PCSCD = {"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}


def assert_no_escape(name: str, count: int, seed: int) -> None:
    result = run_target(TARGETS[name], seed=seed, count=count)
    assert result.inputs == count
    assert result.escapes == [], [(e.index, e.error, e.input) for e in result.escapes[:3]]
    assert 0 < result.refused, "the generator made no malformed input"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_only_the_documented_error_escapes(name):
    assert_no_escape(name, QUICK.get(name, 3000), seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_only_the_documented_error_escapes_in_a_long_run(name):
    for seed in (2, 3, 4):
        assert_no_escape(name, 10 * QUICK.get(name, 3000), seed=seed)


def cli_sample(count: int, seed: int) -> list[tuple[str, str, bytes]]:
    """(name, kind, bytes): every named case, then generated files."""
    rng = random.Random(seed)
    sample = [(name, kind, data) for name, (kind, data) in documents.NAMED.items()]
    while len(sample) < count:
        kind = rng.choice(("config", "rig"))
        data = documents.config_file(rng) if kind == "config" else documents.rig_file(rng)
        sample.append((f"generated {kind} {len(sample)}", kind, data))
    return sample


def test_the_sample_covers_every_case_of_the_issue():
    names = " ".join(documents.NAMED)
    for words in ("latin-1", "utf-16", "without BOM", "deep", "meteor", "upper=Z", "pcsc://99", ":::", "99999"):
        assert words in names
    for words in ("count 10^23", "max_withdrawal", "pin=banana", "name = 5", "%%%"):
        assert words in names


@pytest.mark.slow
def test_the_cli_gives_one_line_and_exit_2_for_every_malformed_file(tmp_path):
    secret = tmp_path / "secret.toml"
    secret.write_text(documents.SECRET)
    failures = []
    for i, (name, kind, data) in enumerate(cli_sample(40, seed=1)):
        path = tmp_path / f"{i}.toml"
        path.write_bytes(data)
        journal = tmp_path / f"var{i}" / "journal.db"
        given = ["--config", str(path)] if kind == "config" else ["--rig", str(path), "--config", str(secret)]
        run = ["run", "--journal", str(journal), "--duration", "0.5", "--no-customers"]
        command = run if i % 2 else ["status"]
        proc = subprocess.run(
            [ATM, *command, *given], capture_output=True, text=True, timeout=60, env={**os.environ, **NO_PCSCD}
        )
        malformed = proc.returncode != 0 or name in documents.NAMED
        if "Traceback" in proc.stderr or (
            malformed and (proc.returncode != 2 or proc.stderr.count("\n") != 1 or journal.exists())
        ):
            failures.append((name, command[0], proc.returncode, proc.stderr[-500:]))
    assert failures == []
