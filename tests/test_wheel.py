"""The built wheel carries its data: installed in a clean venv, `atm` runs from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(*cmd, cwd, timeout=600):
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(atm, workdir)``: the wheel's ``atm`` in a new venv, and an empty directory."""
    base = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "dist", ROOT, cwd=base)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((base / "dist").glob("atm_agent-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "rigs/sim.toml",
        "rigs/pi-kiosk.toml",
        "assets/prompts/ja.toml",
        "assets/prompts/patterns.toml",
        "assets/video/help_en.mp4",
        "hw_mocks/emv_profiles/domestic_debit.toml",
    ):
        assert shipped in names, shipped
    venv.create(base / "venv", with_pip=True)
    python = base / "venv" / "bin" / "python"
    done = run(python, "-m", "pip", "install", "-q", wheel, cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    work = base / "elsewhere"
    work.mkdir()
    return base / "venv" / "bin" / "atm", work


def test_demo_runs_from_the_installed_wheel(installed):
    atm, work = installed
    out = run(atm, "demo", "--scenario", "withdrawal", cwd=work, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scenario withdrawal: ended as scripted" in out.stdout


def test_status_uses_the_shipped_rig_by_default_and_by_name(installed):
    atm, work = installed
    for args in ((), ("--rig", "sim")):
        out = run(atm, "status", "--json", *args, cwd=work, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout)
        assert report["service"] == "in_service"
        assert report["rig"].endswith(os.path.join("rigs", "sim.toml")) and "site-packages" in report["rig"]
        assert report["devices"]["dispenser"]["model"] == "LCDM-2000"


def test_a_rig_path_relative_to_the_working_directory_still_works(installed):
    atm, work = installed
    (work / "rigs").mkdir(exist_ok=True)
    (work / "rigs" / "mine.toml").write_text(
        "[devices]\n"
        + "".join(
            f'{k} = "sim://"\n'
            for k in (
                "card_reader",
                "chip",
                "dispenser",
                "acceptor",
                "proximity",
                "keypad",
                "camera",
                "speaker",
                "display",
            )
        )
    )
    out = run(atm, "status", "--rig", "rigs/mine.toml", cwd=work, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on rig rigs/mine.toml" in out.stdout
    out = run(atm, "status", "--rig", "nosuch", cwd=work, timeout=120)
    assert out.returncode == 2 and "no such shipped rig (shipped: pcsc, pi-kiosk, sim" in out.stderr
