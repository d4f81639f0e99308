"""A real ``mosquitto`` child process and a collecting subscriber.

Everything listens on 127.0.0.1 only, on a free port.

Plain MQTT (the default)::

    with Mosquitto() as broker:            # broker.url == "mqtt://127.0.0.1:<port>"
        ...

Mutual TLS with per-ATM ACLs (see ``hw_mocks/servers/tls.py`` and ``docs/mosquitto/``)::

    pki = make_pki(tmp_path, atm_ids=("atm-0001", "atm-0002"))
    with Mosquitto(tls=pki, acl=ACL_TEXT) as broker:   # broker.url == "mqtts://127.0.0.1:<port>"
        client = make_client(broker, "atm-0001")       # paho client with atm-0001's cert
        with Subscriber(broker, "atm/v1/#", cert="monitor") as sub:
            ...

``stop()`` (SIGTERM), ``kill()`` (SIGKILL) and ``start()`` again on the same port simulate
broker outages; ``pause()`` (SIGSTOP) a silent site that still holds its connections and
accepts TCP, ``resume()`` (SIGCONT) ends it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hw_mocks.servers import started
from hw_mocks.servers.wait import wait_for

if TYPE_CHECKING:
    from hw_mocks.servers.tls import CertKey, Pki

HOST = "127.0.0.1"


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux ``prctl``)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if path is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); the MQTT tests need a real broker")
    return path


def mosquitto_version() -> tuple[int, ...]:
    """The installed mosquitto's version, e.g. (2, 0, 11)."""
    out = subprocess.run([find_mosquitto(), "-h"], capture_output=True, text=True).stdout
    for word in out.split():
        if word[:1].isdigit() and "." in word:
            return tuple(int(p) for p in word.split(".") if p.isdigit())
    raise RuntimeError(f"cannot tell the mosquitto version from: {out[:200]!r}")


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:<free port>, with its own config file.

    Without ``tls``: a plain MQTT listener, anonymous clients allowed (``mqtt://``).

    With ``tls`` (a :class:`hw_mocks.servers.tls.Pki`): a TLS listener (``mqtts://``) using the Pki's
    CA, server certificate and key; ``require_certificate`` makes it mutual TLS,
    ``use_identity_as_username`` makes the client certificate's CN the MQTT username (what
    ``%u`` in ACL patterns and ``user`` lines refer to). ``allow_anonymous`` defaults to True
    without TLS and False with it.

    ``acl``: the text of an ACL file (``str``) or the path of one (``os.PathLike``);
    written/passed as ``acl_file``. Without it every client may use every topic.

    ``persistence``: keep retained messages, sessions and their queues in a database in
    the broker's temp dir, so they survive ``stop()``/``start()``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: Pki | None = None,
        require_certificate: bool = True,
        acl: str | os.PathLike | None = None,
        use_identity_as_username: bool = True,
        allow_anonymous: bool | None = None,
        persistence: bool = False,
        extra: str = "",
        die_with_parent: bool = False,
    ):
        """``die_with_parent``: the kernel stops the broker when the thread that started it
        dies, even by SIGKILL (``PR_SET_PDEATHSIG``; start it from the main thread)."""
        self.die_with_parent = die_with_parent
        self.exe = find_mosquitto()
        self.port = port or free_port()
        self.host = HOST
        self.tls = tls
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.conf = Path(self._dir.name) / "mosquitto.conf"
        self.logfile = Path(self._dir.name) / "mosquitto.log"
        self.acl_file: Path | None = None
        if isinstance(acl, str):
            self.acl_file = Path(self._dir.name) / "acl"
            self.acl_file.write_text(acl)
        elif acl is not None:
            self.acl_file = Path(acl)
        if allow_anonymous is None:
            allow_anonymous = tls is None
        lines = [f"listener {self.port} {HOST}"]
        if os.geteuid() == 0:
            # Stay root: mosquitto would otherwise switch to the "mosquitto" user before
            # reading the ACL, and could not read it or the (0600) keys in our temp dirs.
            lines.insert(0, "user root")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server.cert}",
                f"keyfile {tls.server.key}",
                f"require_certificate {str(require_certificate).lower()}",
                f"use_identity_as_username {str(use_identity_as_username).lower()}",
            ]
        lines.append(f"allow_anonymous {str(allow_anonymous).lower()}")
        if persistence:
            # Kept across stop()/kill()/start(), removed by close(). mosquitto writes it on a
            # clean exit (SIGTERM) and every autosave_interval (default 1800 s): a SIGKILL
            # loses what was not saved, as it would in production.
            lines += ["persistence true", f"persistence_location {self._dir.name}/"]
        else:
            lines.append("persistence false")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if extra:  # more mosquitto.conf lines, e.g. "max_queued_messages 0" for benchmarks
            lines.append(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls is not None else 'mqtt'}://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 5.0) -> Mosquitto:
        if self.running:
            return self
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf), "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_terminate_with_parent if self.die_with_parent else None,
            start_new_session=self.die_with_parent,  # a Ctrl-C in the terminal reaches only its parent
            # mosquitto speaks systemd's notify protocol: never for its parent's service
            env={k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")},
        )
        log.close()
        started["mosquitto"] += 1

        def listening() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"mosquitto exited with {code}:\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        try:
            wait_for(listening, timeout, 0.05, f"mosquitto to listen on {HOST}:{self.port}")
        except AssertionError as exc:
            self.stop()
            raise RuntimeError(f"{exc}:\n{self.log()}") from None
        return self

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its sockets (a hung site).
        The kernel still completes TCP handshakes on its listening port."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 3.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker must see the SIGTERM
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: the broker dies without closing anything gracefully (an outage).
        ``start()`` brings it back on the same port."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Wait until the broker's log (it runs with -v) contains ``text``; return that line.
        AssertionError on timeout."""

        def found() -> str | None:
            return next((line for line in self.log().splitlines() if text in line), None)

        line = wait_for(found, timeout, 0.02, lambda: f"{text!r} in the mosquitto log:\n{self.log()[-3000:]}")
        assert line is not None  # wait_for returns a truthy value
        return line

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self):
        return json.loads(self.payload)


def make_client(
    broker: Mosquitto | int,
    cert: str | CertKey | None = None,
    *,
    ca: str | os.PathLike | None = None,
    client_id: str = "",
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
) -> paho.Client:
    """A (not yet connected) paho client for ``broker``; connect with
    ``client.connect(HOST, port)``.

    For a TLS broker the client verifies the broker against ``ca`` (default: the broker's
    CA) including the host name, and presents ``cert``: a CN from the broker's Pki, a
    :class:`hw_mocks.servers.tls.CertKey`, or None for no client certificate.
    """
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    pki = broker.tls if isinstance(broker, Mosquitto) else None
    if pki is None and (cert is not None or ca is not None):
        raise ValueError("client certificates need a TLS broker (Mosquitto(tls=...))")
    if pki is not None:
        if isinstance(cert, str):
            cert = pki.client(cert)
        c.tls_set(
            ca_certs=str(ca or pki.ca_cert),
            certfile=str(cert.cert) if cert is not None else None,
            keyfile=str(cert.key) if cert is not None else None,
        )
    return c


class Subscriber:
    """A paho client that collects messages matching ``topic`` into ``messages``.

    For a TLS broker it connects with client certificate ``cert`` (a CN from the broker's
    Pki or a CertKey); by default the Pki's ``monitor`` certificate when there is one.
    """

    def __init__(
        self, broker: Mosquitto | int, topic: str = "#", client_id: str = "", *, cert: str | CertKey | None = None
    ):
        port = broker.port if isinstance(broker, Mosquitto) else broker
        self.topic = topic
        self.messages: list[Received] = []
        self.suback: list = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        pki = broker.tls if isinstance(broker, Mosquitto) else None
        if pki is not None and cert is None and "monitor" in pki.clients:
            cert = "monitor"
        c = make_client(broker, cert, client_id=client_id)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(topic, qos=1)
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self.port = port

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.suback = list(reason_codes)
        self._subscribed.set()

    def start(self, timeout: float = 5.0) -> Subscriber:
        self.client.connect(HOST, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"subscriber: no SUBACK for {self.topic!r} within {timeout}s")
        refused = [rc for rc in self.suback if rc.is_failure]
        if refused:
            self.stop()
            raise RuntimeError(f"subscriber: {self.topic!r} refused by the broker: {refused}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
        """Return the first message matching ``predicate``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.topic, m.payload[:80]) for m in self.messages]
                    raise AssertionError(f"no matching message on {self.topic!r} within {timeout}s; got {got}")
                self._cond.wait(left)

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
