"""``atm journal verify`` (the hash chain and the signed checkpoints) and ``atm journal
public-key`` (the key checkpoints are signed with, to register at the monitoring centre)."""

from __future__ import annotations

import json
import os
import re

from agent.cli.common import UsageError, journal_to_read, load_config, print_report

HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def _public_key(text: str):
    """--public-key: 64 hex digits, or a file holding a PEM public key (or the hex)."""
    from agent.journal_signing import parse_public

    if HEX_KEY.fullmatch(text.strip()):
        return parse_public(text, "--public-key")
    if not os.path.isfile(text):
        raise UsageError(f"--public-key: {text!r} is neither a key file nor 64 hex digits")
    with open(text, encoding="utf-8", errors="replace") as f:
        return parse_public(f.read(16 * 1024), f"--public-key {text}")


def cmd_verify(args) -> int:
    from agent.journal_reader import open_readonly
    from agent.journal_verify import verify

    public = _public_key(args.public_key) if args.public_key else None
    path = journal_to_read(args)
    db = open_readonly(path)
    try:
        verdict = verify(db, path, public)
    finally:
        db.close()
    print_report(verdict.as_dict(), args.json, verify_text)
    return 0 if verdict.ok else 1


def verify_text(report: dict) -> str:
    cp = report["last_checkpoint"]
    signed = (
        f"; last checkpoint at row {cp['seq']} ({cp['ts']}), {report['unsigned_rows']} rows after it not yet signed;"
        f" key {report['key_id']} (from {'--public-key' if report['key_source'] == '--public-key' else 'the journal'})"
        if cp
        else "; no checkpoint yet"
    )
    if report["ok"]:
        return (
            f"intact: {report['rows']} rows, head {report['head'][:16]}{signed} (checkpoints: {report['checkpoints']})"
        )
    first, more = report["problems"][0], len(report["problems"]) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''}: --json lists them)" if more else ""
    return f"broken at row {first['row']}: {first['kind']}: {first['message']}{tail}"


def signing_key_path(args) -> str:
    """The config's ``security.signing_key``, else ``<journal>-signing.key``."""
    from agent.journal_signing import default_key_path

    if args.key:
        return args.key
    if not args.journal:
        cfg = load_config(args.config)
        if cfg.signing_key:
            return cfg.signing_key
    return default_key_path(journal_to_read(args))


def cmd_public_key(args) -> int:
    from agent.journal_signing import key_id, load_private, public_pem, raw_public

    path = signing_key_path(args)
    if not os.path.isfile(path):
        raise UsageError(f"no signing key at {path} (the agent makes it when it first writes the journal)")
    public = load_private(path).public_key()
    report = {"key_file": path, "key_id": key_id(public), "pem": public_pem(public), "hex": raw_public(public).hex()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["hex"] if args.hex else report["pem"].rstrip())
    return 0


def register(journal_sub) -> None:
    verify = journal_sub.add_parser(
        "verify", help="check the hash chain and the signed checkpoints (exit 0 intact, 1 broken, 2 error)"
    )
    verify.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    verify.add_argument("--config", help="TOML config file")
    verify.add_argument(
        "--public-key",
        metavar="KEY",
        help="the ATM's registered public key: a PEM file, or 64 hex digits (default: the key the journal names)",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    public = journal_sub.add_parser("public-key", help="print the public key the checkpoints are signed with (PEM)")
    public.add_argument("--journal", metavar="FILE", help="the journal whose key (<journal>-signing.key)")
    public.add_argument("--config", help="TOML config file (its security.signing_key)")
    public.add_argument("--key", metavar="FILE", help="the signing key file itself")
    public.add_argument("--hex", action="store_true", help="the raw 32-byte key as 64 hex digits instead")
    public.add_argument("--json", action="store_true", help="file, key id, PEM and hex")
    public.set_defaults(func=cmd_public_key)
