"""Telemetry over MQTT 5 that never loses a message (paho-mqtt 2.x).

:class:`MqttLink` implements the ``Publisher`` protocol of ``agent.telemetry``:

- **Store first.** ``publish`` writes the message to the SQLite
  :class:`~agent.outbox.Outbox` and returns; one network thread sends it. A
  message leaves the outbox only on a PUBACK with a success reason code
  (tracked by ``mid`` in ``on_publish``; paho's ``is_published`` is not to be
  trusted across reconnects). Delivery is at least once: consumers drop
  duplicates by the message ``id``.
- **Order.** Per topic, messages go out in the order they were stored. After
  a reconnect the backlog drains in order, flagged ``"historical": true``,
  while live messages on topics without a backlog go out at once.
- **Sessions (Sparkplug's ideas, in JSON).** Every CONNECT gets a new
  ``bdSeq`` (kept in the outbox database). The Will is the retained offline
  status carrying that ``bdSeq``, so a late Will of an older session is never
  taken for the current one. Every connect publishes a birth message with the
  full metadata; an intentional stop publishes the offline status itself,
  because DISCONNECT suppresses the Will.
- **Two sites.** Brokers are tried in order, primary first. When the broker
  in use is lost or refuses us, the next one is tried at once; once the
  primary has answered again for ``failback_after`` seconds, the link returns
  to it. It is never connected to two brokers at once. Changes are reported
  as ``broker_failover`` events.
- **Commands.** The link subscribes to ``atm/v1/<atm_id>/cmd/+`` and hands each
  request to ``on_command(name, payload, reply)``; ``reply(dict)`` answers on the
  request's ResponseTopic with its CorrelationData, from any thread.

paho runs with its external-loop API (``loop_read``/``loop_write``/``loop_misc``)
on our own thread, so all of paho's callbacks run there and we choose the host
of every connection ourselves.

The modules, one responsibility each:

- ``brokers``: broker URLs (:class:`BrokerUrl`, :func:`parse_broker_url`) and :class:`TlsFiles`;
- ``failover``: :class:`BrokerChoice`, which broker to connect to (primary, next, failback);
- ``drain``: :class:`OutboxDrain`, backlog paging, messages held per topic, PUBACK → delete;
- ``commands``: :class:`CommandChannel`, requests on ``cmd/+`` and their replies;
- ``session``: :class:`SessionMessages`, birth, online/offline status and the Will with ``bdSeq``;
- ``connection``: :class:`BrokerConnection`, one paho client, and the thread's :class:`WakeUp` pipe;
- ``link``: :class:`MqttLink`, the network thread that composes them.
"""

from agent.mqtt.brokers import DEFAULT_PORTS, BrokerUrl, TlsFiles, parse_broker_url
from agent.mqtt.commands import CommandChannel
from agent.mqtt.connection import BrokerConnection, WakeUp
from agent.mqtt.drain import PAGE, WINDOW, OutboxDrain
from agent.mqtt.failover import BrokerChoice
from agent.mqtt.link import MqttLink
from agent.mqtt.session import SessionMessages

__all__ = [
    "DEFAULT_PORTS",
    "PAGE",
    "WINDOW",
    "BrokerChoice",
    "BrokerConnection",
    "BrokerUrl",
    "CommandChannel",
    "MqttLink",
    "OutboxDrain",
    "SessionMessages",
    "TlsFiles",
    "WakeUp",
    "parse_broker_url",
]
