"""The control socket: the agent serves the control API here, on a thread of its own.

One ``selectors`` loop accepts connections, checks each peer's credentials
(``SO_PEERCRED``) and reads request lines; each request goes to ``handler`` (the same
:class:`agent.remote.CommandHandler` the MQTT link uses), whose answer may come later
from the state machine's thread: it is queued and written by this thread, so neither a
slow client nor a full socket ever holds the loop. A stream (``trace``, ``logs``) is
served here, from the rings of :mod:`agent.control.streams`: a following connection gets
each new entry as its socket takes it, and a count of what it read too slowly to get.
"""

from __future__ import annotations

import collections
import grp
import json
import logging
import os
import pwd
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.control.protocol import (
    INVALID_REQUEST,
    MAX_LINE,
    RpcError,
    error_line,
    notification_line,
    parse_line,
    reply_line,
)
from agent.control.streams import Follower, Streams
from agent.mqtt.commands import Request

log = logging.getLogger("agent.control")

MAX_CLIENTS = 16  # connections at once (ours)
MAX_ENGINEER = 64  # characters of an engineer's name
MAX_PATH = 107  # bytes of a Unix socket's path (sun_path holds 108, with its NUL)
ANSWER_WITHIN = 120.0  # seconds a request may wait for the agent's answer (a self-test is slow)
IDLE_FOR = 300.0  # seconds a connection may stay without a request before it is closed
REFUSED_FOR = 2.0  # seconds a refused connection is kept to read its request (then closed)
BATCH = 64  # stream entries queued for a follower's socket at a time (ours)


class ControlError(OSError):
    """The socket cannot be served (the path is in use, or cannot be made)."""


class Peer:
    """Who is at the other end of a connection, from the kernel (``SO_PEERCRED``)."""

    def __init__(self, conn: socket.socket):
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.pid, self.uid, self.gid = struct.unpack("3i", creds)
        try:
            self.user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            self.user = f"uid {self.uid}"

    def allowed(self, group: str) -> bool:
        """Root, the agent's own user, or a member of ``group``."""
        if self.uid in (0, os.getuid()):
            return True
        if not group:
            return False
        try:
            gid = grp.getgrnam(group).gr_gid
            return gid == self.gid or gid in os.getgrouplist(self.user, self.gid)
        except KeyError:  # no such group or user
            return False


class _Client:
    """One connection: one request at a time (the next line is read only once the answer
    to this one is written), so no client can flood the loop or fill memory."""

    def __init__(self, conn: socket.socket, peer: Peer):
        self.conn, self.peer = conn, peer
        self.inbuf = b""
        self.outbuf = collections.deque[bytes]()
        self.pending_since = 0.0  # monotonic time the request in flight was taken (0: none)
        self.active = time.monotonic()  # the last request or answer
        self.closing = False  # no more requests: close once the answers are written
        self.registered = False  # in the selector
        self.refused = False  # told why it may not use the socket; what it sends is discarded
        self.follower: Follower | None = None  # following a stream: no more requests

    @property
    def busy(self) -> bool:
        return bool(self.pending_since) or bool(self.outbuf) or self.follower is not None


class ControlServer:
    """Serves ``path``; ``handler(request)`` gets each checked request (a :class:`Request`
    with ``transport="control"`` and the engineer)."""

    def __init__(self, path: str, handler: Callable[[Request], None], group: str = "", streams: Streams | None = None):
        self.path = path
        self.handler = handler
        self.group = group
        self.streams = streams
        self.refused = 0  # connections refused for their credentials
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()
        self._clients: dict[int, _Client] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inode = 0  # of the socket file we bound

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket (0660 for the group, 0600 without) and serve it on a thread."""
        self._claim_path()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            os.chmod(self.path, 0o660 if self.group else 0o600)
            if self.group:
                os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
            listener.listen(MAX_CLIENTS)
            self._inode = os.stat(self.path).st_ino
        except (OSError, KeyError) as exc:
            listener.close()
            raise ControlError(f"control socket {self.path}: {exc}") from None
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()

    def _claim_path(self) -> None:
        """Refuse a path another agent serves; remove a stale socket a dead one left."""
        path = Path(self.path)
        if len(os.fsencode(self.path)) > MAX_PATH:
            raise ControlError(f"control socket {self.path}: longer than a Unix socket path may be ({MAX_PATH} bytes)")
        if not path.parent.is_dir():
            raise ControlError(f"control socket {self.path}: the folder {path.parent} does not exist")
        if not path.exists() and not path.is_symlink():
            return
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlError(f"control socket {self.path}: the path exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            path.unlink()  # nobody listens: left by an agent that died
            return
        except OSError as exc:  # not ours to judge (another user's), or a live one too busy
            raise ControlError(f"control socket {self.path}: cannot tell whether an agent serves it: {exc}") from None
        finally:
            probe.close()
        raise ControlError(f"control socket {self.path}: another agent serves it")

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        for client in list(self._clients.values()):
            self._drop(client)
        if self._listener is not None:
            self._listener.close()
            try:
                if os.stat(self.path).st_ino == self._inode:  # still ours, not a later agent's
                    os.unlink(self.path)
            except OSError:
                pass
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread ---------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # the socket must outlive any one request
                log.error("control socket: %r", exc)

    def _turn(self) -> None:
        for key, events in self._selector.select(timeout=1.0):
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
            elif sock is self._wake_r:
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
            else:
                client = key.data
                if events & selectors.EVENT_READ:
                    self._read(client)
                if events & selectors.EVENT_WRITE:
                    self._write(client)
        now = time.monotonic()
        for client in list(self._clients.values()):
            with self._lock:
                late = client.pending_since and now - client.pending_since > ANSWER_WITHIN
                if late:
                    client.pending_since, client.closing = 0.0, True
                    client.outbuf.append(error_line(None, -32603, f"no answer within {ANSWER_WITHIN:g} s", "internal"))
                idle = not client.busy and now - client.active > (REFUSED_FOR if client.refused else IDLE_FOR)
                stalled = client.follower and client.outbuf and now - client.active > IDLE_FOR  # took nothing
                idle = idle or bool(stalled)
            if idle:
                self._drop(client)
            else:
                self._pump(client)  # answers queued by other threads; the next request

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            peer = Peer(conn)
            allowed = peer.allowed(self.group)
        except (OSError, KeyError) as exc:  # the credentials or the group database would not answer
            log.warning("control socket: refused a connection: %r", exc)
            conn.close()
            return
        if not allowed or len(self._clients) >= MAX_CLIENTS:
            self.refused += 1
            why = (
                f"{peer.user} may not use this socket (group {self.group!r})"
                if not allowed
                else f"too many connections ({MAX_CLIENTS})"
            )
            log.warning("control socket: refused pid %d: %s", peer.pid, why)
            if not allowed:  # told why, then closed once it stops sending (closing on unread
                conn.setblocking(False)  # data would reset the connection before it reads)
                client = _Client(conn, peer)
                client.refused = client.closing = True
                client.outbuf.append(error_line(None, INVALID_REQUEST, f"not permitted: {why}", "not_permitted"))
                self._clients[conn.fileno()] = client
                self._watch(client, read=True, write=True)
                return
            try:
                conn.sendall(error_line(None, INVALID_REQUEST, f"not permitted: {why}", "not_permitted"))
            except OSError:
                pass
            conn.close()
            return
        conn.setblocking(False)
        client = _Client(conn, peer)
        self._clients[conn.fileno()] = client
        self._watch(client, read=True, write=False)

    def _read(self, client: _Client) -> None:
        try:
            data = client.conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if client.follower is not None:  # a follower only hangs up; what it sends is discarded
            return None if data else self._drop(client)
        if not data:  # the client is done sending: answer what it asked, then close
            client.closing, client.refused = True, False
            return self._pump(client)
        if client.refused:
            return  # read and dropped until it hangs up (or for REFUSED_FOR seconds)
        client.inbuf += data
        if b"\n" not in client.inbuf and len(client.inbuf) > MAX_LINE:  # no end of line in sight
            client.inbuf, client.closing = b"", True
            self._send(client, RpcError(INVALID_REQUEST, f"a request line is at most {MAX_LINE} bytes").reply())
        self._pump(client)

    def _pump(self, client: _Client) -> None:
        """Take the next buffered request once the last one is answered and written; read
        only while idle; close a closing client once it is idle."""
        if client.refused:  # its answer is the refusal; wait for its end of file
            return self._watch(client, read=True, write=bool(client.outbuf))
        if client.follower is not None:
            return self._feed(client)
        while not client.busy and b"\n" in client.inbuf:
            line, client.inbuf = client.inbuf.split(b"\n", 1)
            if line.strip():
                self._call(client, line)
        if client.closing and not client.busy and (not client.inbuf or b"\n" not in client.inbuf):
            return self._drop(client)
        self._watch(client, read=not client.busy and not client.closing, write=bool(client.outbuf))

    def _call(self, client: _Client, line: bytes) -> None:
        try:
            call = parse_line(line)
        except RpcError as exc:
            return self._send(client, exc.reply())
        params = dict(call.params)
        engineer = params.pop("engineer", client.peer.user)
        if not isinstance(engineer, str) or not 0 < len(engineer) <= MAX_ENGINEER or not engineer.isprintable():
            return self._send(
                client, RpcError(-32602, f"engineer must be 1-{MAX_ENGINEER} printable characters", call.id).reply()
            )

        def reply(answer: dict) -> None:  # any thread; once
            with self._lock:
                if client.pending_since:  # the answer first: the client is never seen idle between
                    client.outbuf.append(reply_line(call.id, answer))
                    client.pending_since = 0.0
            self._wake()

        def stream(name: str, args: dict) -> None:  # this thread, from the handler
            self._open_stream(client, call.id, name, args)

        client.pending_since = client.active = time.monotonic()
        request = Request(
            call.method,
            json.dumps(params).encode(),
            reply,
            transport="control",
            engineer=f"{engineer} (uid {client.peer.uid})" if engineer != client.peer.user else engineer,
            stream=stream if self.streams is not None else None,
        )
        self.handler(request)

    def _open_stream(self, client: _Client, request_id: object, name: str, args: dict) -> None:
        """Answer a checked stream request with the recent entries and, with ``follow``,
        follow its ring; BadRequest (answered by the handler) for a device not traced."""
        assert self.streams is not None
        answer, follower = self.streams.open(name, args, self._wake)
        with self._lock:
            client.outbuf.append(reply_line(request_id, answer))
            client.pending_since = 0.0
            client.follower = follower

    def _feed(self, client: _Client) -> None:
        """A follower's next entries, once its socket took the last ones; read only for its hang-up."""
        assert client.follower is not None
        if not client.outbuf:
            method = client.follower.method
            for item in client.follower.take(BATCH):
                if isinstance(item, int):
                    line = notification_line("dropped", {"count": item})
                else:
                    line = notification_line(method, {"entry": item})
                self._send(client, line)
        self._watch(client, read=True, write=bool(client.outbuf))

    def _send(self, client: _Client, line: bytes) -> None:
        """Queue a line for the client (this thread), to be written when it can take it."""
        with self._lock:
            client.outbuf.append(line)

    def _write(self, client: _Client) -> None:
        with self._lock:
            while client.outbuf:
                line = client.outbuf[0]
                try:
                    sent = client.conn.send(line)
                except BlockingIOError:
                    return
                except OSError:
                    client.outbuf.clear()
                    break
                client.active = time.monotonic()
                if sent < len(line):
                    client.outbuf[0] = line[sent:]
                    return
                client.outbuf.popleft()
        client.active = time.monotonic()
        self._pump(client)

    def _watch(self, client: _Client, read: bool, write: bool) -> None:
        """Watch the socket for what the client's state allows; while its request waits for
        the agent with nothing to write, not at all."""
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        try:
            if not events:
                if client.registered:
                    self._selector.unregister(client.conn)
                    client.registered = False
            elif client.registered:
                self._selector.modify(client.conn, events, client)
            else:
                self._selector.register(client.conn, events, client)
                client.registered = True
        except (KeyError, ValueError, OSError):
            pass  # dropped meanwhile

    def _drop(self, client: _Client) -> None:
        if client.follower is not None:
            client.follower.close()
        if self._clients.get(client.conn.fileno()) is client:
            del self._clients[client.conn.fileno()]
        if client.registered:
            try:
                self._selector.unregister(client.conn)
            except (KeyError, ValueError, OSError):
                pass
            client.registered = False
        client.conn.close()
