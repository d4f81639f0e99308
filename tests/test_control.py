"""The control socket and the CLI as its client, against a running `atm run`, as an engineer types it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

from agent.control import protocol

ATM = os.path.join(os.path.dirname(sys.executable), "atm")


def atm(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([ATM, *args], capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def running(tmp_path):
    """``atm run`` on the simulated rig without customers; yields (config file, socket path)."""
    journal = tmp_path / "j.db"
    config = tmp_path / "atm.toml"
    folder = tempfile.mkdtemp(prefix="atm-ctl-")  # outside the 0700 pytest folders: other users reach it
    os.chmod(folder, 0o755)
    config.write_text(
        f'[journal]\npath = "{journal}"\n[control]\nsocket = "{folder}/control.sock"\ngroup = "nogroup"\n'
    )
    proc = subprocess.Popen(
        [ATM, "run", "--config", str(config), "--no-customers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path = ""
        for line in proc.stdout:
            if line.startswith("control: "):
                path = line.split()[1]
            if line.startswith("ready:"):
                break
        assert path == f"{folder}/control.sock", path
        yield config, path, journal
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 0
    assert not os.path.exists(path)  # removed by the agent that served it


def rows(journal) -> list[dict]:
    with sqlite3.connect(journal) as db:
        return [json.loads(d) for (d,) in db.execute("SELECT data FROM entries WHERE name = 'remote_command'")]


class Line:
    """A raw connection to the socket, for what the CLI never sends."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.buf = b""

    def ask(self, raw: bytes) -> dict:
        self.sock.sendall(raw if raw.endswith(b"\n") else raw + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the agent hung up"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


def test_status_and_service_go_through_the_running_agent_and_are_journalled(running):
    config, path, journal = running
    status = json.loads(atm("status", "--json", "--config", str(config)).stdout)
    assert status["agent"] == "running" and status["state"] == "idle" and status["service"] == "in_service"
    assert [c["count"] for c in status["cassettes"]] == [500, 1000]
    out = atm("service", "out", "--reason", "cash van due", "--engineer", "Sato", "--config", str(config))
    assert out.returncode == 0 and out.stdout.strip() == "ATM atm-0001: out of service now", out.stderr
    human = atm("status", "--config", str(config)).stdout
    assert "held: cash van due" in human.splitlines()[0]
    again = atm("service", "out", "--config", str(config))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "atm: error: out_of_service: already out of service by request (not_permitted)"
    ]
    assert atm("service", "in", "--config", str(config)).returncode == 0
    assert json.loads(atm("status", "--json", "--config", str(config)).stdout)["state"] == "idle"
    deadline = time.monotonic() + 5
    while len(rows(journal)) < 5 and time.monotonic() < deadline:  # the loop writes them
        time.sleep(0.05)
    journalled = [(r["command"], r["ok"], r["transport"], r["engineer"]) for r in rows(journal)]
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    assert journalled[:4] == [
        ("status", True, "control", user),
        ("out_of_service", True, "control", f"Sato (uid {os.getuid()})"),
        ("status", True, "control", user),
        ("out_of_service", False, "control", user),
    ]


BAD = [
    (b"not json", protocol.PARSE_ERROR, None),
    (b"\xff\xfe", protocol.PARSE_ERROR, None),
    (b"[" * 5000, protocol.PARSE_ERROR, None),
    (b"[1, 2]", protocol.INVALID_REQUEST, None),
    (b'{"jsonrpc": "2.0", "method": "status"}', protocol.INVALID_REQUEST, None),  # a notification
    (b'{"jsonrpc": "2.0", "id": true, "method": "status"}', protocol.INVALID_REQUEST, None),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "status"}', protocol.INVALID_REQUEST, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": ""}', protocol.INVALID_REQUEST, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "extra": 1}', protocol.INVALID_REQUEST, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": [1]}', protocol.INVALID_PARAMS, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "reboot"}', protocol.METHOD_NOT_FOUND, "unknown_command"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "selftest", "params": {"device": "toaster"}}', -32602, "bad_field"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"x": 1}}', -32602, "unknown_field"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "in_service"}', protocol.REFUSED, "not_permitted"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"engineer": ""}}', -32602, None),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"engineer": 5}}', -32602, None),
    (
        b'{"jsonrpc": "2.0", "id": 1, "method": "out_of_service", "params": {"reason": "' + b"r" * 300 + b'"}}',
        -32602,
        "bad_field",
    ),
]


def test_bad_requests_each_get_an_error_and_change_nothing(running):
    config, path, _journal = running
    line = Line(path)
    try:
        for raw, code, error in BAD:
            answer = line.ask(raw)
            assert answer["error"]["code"] == code, (raw[:60], answer)
            assert error is None or answer["error"]["data"]["error"] == error, (raw[:60], answer)
        big = line.ask(
            b'{"jsonrpc": "2.0", "id": 9, "method": "status", "params": {"reason": "' + b"x" * 70000 + b'"}}'
        )
        assert big["error"]["code"] == protocol.INVALID_REQUEST
    finally:
        line.close()
    again = Line(path)  # the socket still serves, and nothing changed
    try:
        status = again.ask(protocol.request_line(2, "status", {}))
        assert status["id"] == 2 and status["result"]["state"] == "idle" and not status["result"]["held"]
    finally:
        again.close()


def _as_user(uid: int, gid: int, code: str) -> subprocess.CompletedProcess:
    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    python = "/usr/bin/python3"  # the system's: another user may not reach the venv's interpreter
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=20, preexec_fn=drop, cwd="/")


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root to act as other users"
)
def test_only_the_configured_group_may_use_the_socket(running):
    config, path, _journal = running
    ask = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(5)\n"
        f"s.connect({path!r})\n"
        's.sendall(b\'{"jsonrpc": "2.0", "id": 1, "method": "status"}\\n\')\n'
        "print(s.recv(65536).decode())\n"
    )
    member = _as_user(65534, 65534, ask)  # nobody, in group nogroup
    assert member.returncode == 0 and json.loads(member.stdout)["result"]["state"] == "idle", member.stderr
    outsider = _as_user(4242, 4242, ask)  # the 0660 socket: the kernel refuses the connect
    assert outsider.returncode != 0 and "PermissionError" in outsider.stderr
    os.chmod(path, 0o666)  # even with the file open to all, the agent checks who connects
    refused = _as_user(4242, 4242, ask)
    answer = json.loads(refused.stdout)
    assert (
        answer["error"]["data"]["error"] == "not_permitted" and "may not use this socket" in answer["error"]["message"]
    )


def test_without_a_running_agent_service_is_refused_and_status_opens_the_devices(tmp_path):
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n')
    service = atm("service", "out", "--config", str(config))
    assert service.returncode == 2
    assert service.stderr.strip() == (
        f"atm: error: no agent is running for ATM atm-0001 (control socket {tmp_path / 'control.sock'})"
    )
    status = json.loads(atm("status", "--json", "--config", str(config)).stdout)
    assert status["agent"] == "not running" and status["service"] == "in_service"


def test_a_second_agent_on_the_same_socket_is_refused_in_one_line(running, tmp_path):
    config, path, _journal = running
    other = tmp_path / "other.toml"
    other.write_text(f'[journal]\npath = "{tmp_path / "other.db"}"\n[control]\nsocket = "{path}"\n')
    proc = atm("run", "--config", str(other), "--no-customers", "--duration", "1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"atm: error: control socket {path}: another agent serves it"


def test_a_client_that_never_reads_cannot_flood_the_agent(running):
    """One request at a time per connection: the next line is read only once the answer to
    the last one is written, so unread answers stop the client, not the loop."""
    _config, path, journal = running
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    try:
        burst = b"".join(protocol.request_line(n, "status", {}) for n in range(1, 2001))
        sock.sendall(burst)  # the agent's buffers take it all; its answers fill ours
        time.sleep(2.0)
        taken = len(rows(journal))
        assert taken < 2000, taken  # stopped at what the socket could hold
        sock.settimeout(30)
        answers, buf = [], b""
        while len(answers) < 2000:
            buf += sock.recv(1 << 20)
            *lines, buf = buf.split(b"\n")
            answers += [json.loads(line) for line in lines]
    finally:
        sock.close()
    assert [a["id"] for a in answers] == list(range(1, 2001))  # every one answered, in order
    assert all(a["result"]["state"] == "idle" for a in answers)


def test_a_client_that_half_closes_still_gets_its_answer(running):
    _config, path, _journal = running
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    try:
        sock.sendall(protocol.request_line(7, "cash", {}))
        sock.shutdown(socket.SHUT_WR)  # as `printf ... | socat - UNIX-CONNECT:...` does
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    answer = json.loads(data)
    assert answer["id"] == 7 and [c["id"] for c in answer["result"]["cassettes"]] == ["A", "B"]


def test_an_agent_that_does_not_answer_is_an_error_not_a_reason_to_open_its_devices(tmp_path):
    folder = tempfile.mkdtemp(prefix="atm-ctl-")
    path = os.path.join(folder, "control.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(1)  # accepts (the kernel does) and never answers
    config = tmp_path / "atm.toml"
    config.write_text(f'[control]\nsocket = "{path}"\n')
    try:
        proc = atm("status", "--config", str(config))
    finally:
        silent.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"atm: error: the agent on {path} did not answer in time"
    assert "not running" not in proc.stdout


def test_a_stale_socket_is_replaced_and_a_stopped_agent_leaves_no_socket(tmp_path):
    folder = tempfile.mkdtemp(prefix="atm-ctl-")
    path = os.path.join(folder, "control.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: what a killed agent leaves
    dead.close()
    config = tmp_path / "atm.toml"
    config.write_text(f'[journal]\npath = "{tmp_path / "j.db"}"\n[control]\nsocket = "{path}"\n')
    try:
        proc = atm("run", "--config", str(config), "--no-customers", "--duration", "1")
        assert proc.returncode == 0, proc.stderr
        assert f"control: {path} " in proc.stdout
        assert not os.path.exists(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
