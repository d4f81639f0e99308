"""``atm journal ...``: the electronic journal as evidence (verify, query, export).

Each module in :data:`SUBCOMMANDS` adds its subcommands to ``atm journal``
(``register(journal_sub)``). Every one reads the journal ``atm run`` of the config uses,
or the one named with ``--journal FILE``, whether or not an agent runs on it.
"""

from __future__ import annotations

from agent.cli import journal_evidence, journal_export, journal_query, journal_verify

SUBCOMMANDS: tuple = (
    journal_verify,
    journal_query,
    journal_export,
    journal_evidence,
)  # modules with register(journal_sub), in the order --help lists them


def register(sub) -> None:
    journal = sub.add_parser("journal", help="the electronic journal: verify it, query it, export it for a request")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True, metavar="SUBCOMMAND")
    for module in SUBCOMMANDS:
        module.register(journal_sub)
