"""``atm journal export`` (the rows a request selects, as a signed, self-verifying bundle)
and ``atm journal verify-export`` (check one with the ATM's public key alone).

The bundle's format and checks: docs/journal.md, "Export for a request". A card number
given with ``--card`` becomes its token in memory; the bundle holds tokens and last 4s only.
"""

from __future__ import annotations

import os
import re

from agent.cli.common import UsageError, journal_to_read, load_config, print_report
from agent.cli.journal_query import add_selection

DIGIT_RUN = re.compile(r"\d{13,19}")


def _request(text: str) -> str:
    """--request: what the investigator's request is called; never a card number."""
    from devices.carddata import luhn_ok

    if not 1 <= len(text) <= 128 or not text.isprintable() or text != text.strip():
        raise UsageError("--request: give the request's reference, 1 to 128 printable characters")
    if any(luhn_ok(run) for run in DIGIT_RUN.findall(text)):
        raise UsageError("--request: it holds what may be a card number; it is not shown here")
    return text


def cmd_export(args) -> int:
    from agent.cli.journal_query import query_of
    from agent.journal_export import build
    from agent.journal_reader import open_readonly
    from agent.journal_signing import default_key_path, load_private

    for option, value in (("--request REF", args.request), ("--from TIME", args.start), ("--to TIME", args.end)):
        if value is None:
            raise UsageError(f"{option} is required (atm journal export --request REF --from TIME --to TIME -o FILE)")
    if args.output is None:
        raise UsageError("-o FILE is required: the bundle to write")
    request = _request(args.request)
    if os.path.lexists(args.output):
        raise UsageError(f"-o {args.output}: the file exists; an export never overwrites one")
    query = query_of(args)
    by = next((o for o in ("card", "token", "last4") if getattr(args, o) is not None), None)
    cfg = load_config(args.config)
    path = journal_to_read(args)
    key_path = cfg.signing_key or default_key_path(path)
    db = open_readonly(path)
    try:
        if not os.path.isfile(key_path):
            raise UsageError(
                f"no signing key at {key_path}: an export is signed with the ATM's key (security.signing_key)"
            )
        private = load_private(key_path)
        blob, manifest = build(db, path, query, request, cfg.atm_id, private, by)
    finally:
        db.close()
    _write_new(args.output, blob)
    from agent.journal_bundle import sha256

    report = {"bundle": args.output, "bytes": len(blob), "sha256": sha256(blob), "manifest": manifest}
    print_report(report, args.json, export_text)
    return 0


def _write_new(path: str, blob: bytes) -> None:
    """Write ``blob`` to a file that must not exist yet; nothing is left behind on failure."""
    try:
        f = open(path, "xb")
    except FileExistsError:
        raise UsageError(f"-o {path}: the file exists; an export never overwrites one") from None
    try:
        with f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def export_text(report: dict) -> str:
    m = report["manifest"]
    spans = ", ".join(
        f"{s['from_checkpoint'] or 'genesis'} to {s['to_checkpoint']}" for s in m["segments"]
    )  # rows between checkpoints
    sessions = len(m["sessions"])
    return (
        f"exported request {m['request']}: {m['rows']} rows ({sessions} session{'s' if sessions != 1 else ''}),"
        f" {m['window']['from']} (incl.) to {m['window']['to']} (excl.); chain from checkpoint {spans}"
        f" ({m['context_rows']} rows of context); signed by key {m['key_id']}\n"
        f"wrote {report['bundle']} ({report['bytes']} bytes, sha256 {report['sha256']})"
    )


def cmd_verify_export(args) -> int:
    from agent.cli.journal_verify import _public_key
    from agent.journal_bundle import MAX_BYTES
    from agent.journal_verify_export import verify_bundle

    if args.public_key is None:
        raise UsageError("--public-key KEY is required: the ATM's registered key (atm journal public-key prints it)")
    public = _public_key(args.public_key)
    if not os.path.isfile(args.bundle):
        raise UsageError(f"no bundle at {args.bundle}")
    if os.path.getsize(args.bundle) > MAX_BYTES:
        raise UsageError(f"{args.bundle}: larger than {MAX_BYTES} bytes: no bundle of this tool")
    with open(args.bundle, "rb") as f:
        blob = f.read()
    report = verify_bundle(blob, args.bundle, public).as_dict()
    print_report(report, args.json, verify_export_text)
    return 0 if report["ok"] else 1


def verify_export_text(report: dict) -> str:
    if not report["ok"]:
        return f"broken: {report['bundle']}: {report['problem']}"
    window = report["window"]
    return (
        f"verified: request {report['request']}, ATM {report['atm_id']}: {report['rows']} rows"
        f" ({len(report['sessions'])} session(s)), {window['from']} (incl.) to {window['to']} (excl.);"
        f" {'; '.join(report['checked'])}"
    )


def register(journal_sub) -> None:
    export = journal_sub.add_parser(
        "export",
        help="write the rows a request selects as a signed bundle that verifies without the ATM",
        description="The rows atm journal query selects (FROM <= time < TO; whole sessions with a card or"
        " session filter), the chain between the signed checkpoints around them, and a manifest signed"
        " with the ATM's key, as one tar file.",
    )
    export.add_argument("--request", metavar="REF", help="the request's reference (case number)")
    add_selection(export)
    export.add_argument("-o", "--output", metavar="FILE", help="the bundle to write (never overwritten)")
    export.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    export.add_argument("--config", help="TOML config file (atm_id, security.card_key and signing_key)")
    export.add_argument("--json", action="store_true", help="the manifest and the file's sha256 as JSON")
    export.set_defaults(func=cmd_export, type=None, csv=False)

    check = journal_sub.add_parser(
        "verify-export",
        help="check an export bundle with the ATM's public key (exit 0 verified, 1 broken, 2 error)",
    )
    check.add_argument("bundle", metavar="FILE", help="the bundle atm journal export wrote")
    check.add_argument("--public-key", metavar="KEY", help="the ATM's registered public key: PEM file or 64 hex digits")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_verify_export)
