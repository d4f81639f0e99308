"""`make install DESTDIR=...`: the kiosk's tree, its modes, an upgrade that keeps the config."""

import os
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.timeout(300)


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", ROOT, *args], capture_output=True, text=True)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_install_stages_the_tree_keeps_a_changed_config_and_uninstall_keeps_the_data(tmp_path):
    stage = tmp_path / "stage"
    first = make("install", f"DESTDIR={stage}", "PREFIX=/opt/atm-test", "INSTALL_DEPS=no")
    assert first.returncode == 0, first.stdout + first.stderr
    venv = stage / "opt/atm-test/venv"
    assert (venv / "bin/atm").read_text().splitlines()[0] == "#!/opt/atm-test/venv/bin/python"  # the final path
    assert str(stage) not in (venv / "pyvenv.cfg").read_text()
    assert list(venv.glob("lib/python3*/site-packages/agent/cli/__init__.py"))  # the wheel's agent
    assert list(venv.glob("lib/python3*/site-packages/assets/prompts/ja.toml"))  # and its data
    unit = (stage / "etc/systemd/system/atm-agent.service").read_text()
    assert "ExecStart=/opt/atm-test/venv/bin/atm run --config /etc/atm/atm.toml" in unit
    config = stage / "etc/atm/atm.toml"
    assert config.read_text() == open(os.path.join(ROOT, "docs", "atm.example.toml")).read()
    assert mode(config) == 0o640 and mode(stage / "var/lib/atm") == 0o750
    assert mode(stage / "etc/udev/rules.d/99-atm.rules") == 0o644
    assert (stage / "opt/atm-test/share/doc/atm/kiosk.md").is_file()

    config.write_text(config.read_text() + '\n[telemetry]\nbrokers = ["mqtts://centre:8883"]\n')
    (stage / "var/lib/atm/journal.db").write_bytes(b"the journal")
    again = make("install", f"DESTDIR={stage}", "PREFIX=/opt/atm-test", "INSTALL_DEPS=no")
    assert again.returncode == 0 and "kept /etc/atm/atm.toml" in again.stdout, again.stderr
    assert "mqtts://centre:8883" in config.read_text()  # an upgrade keeps yours

    gone = make("uninstall", f"DESTDIR={stage}", "PREFIX=/opt/atm-test")
    assert gone.returncode == 0, gone.stderr
    assert not (stage / "opt/atm-test").exists() and not (stage / "etc/systemd/system/atm-agent.service").exists()
    assert config.exists() and (stage / "var/lib/atm/journal.db").read_bytes() == b"the journal"


def test_a_relative_prefix_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [os.path.join(ROOT, "deploy", "install.sh")],
        env={**os.environ, "DESTDIR": str(tmp_path), "PREFIX": "opt/atm"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr == "install: error: PREFIX must be an absolute path, got 'opt/atm'\n"
    assert not any(tmp_path.iterdir())
