"""The control API: the running agent's local service interface for field engineers.

JSON-RPC 2.0 over a Unix socket, one object a line (``protocol``); the agent serves it
on its own thread (``server``) and the CLI is its client (``client``). The methods are
the remote commands of ``agent.remote``: one allow-list, one argument check and one
journal row per request for both transports (MQTT and this socket), naming the
transport and the engineer.
"""

from agent.control.paths import control_socket_path

__all__ = ["control_socket_path"]
