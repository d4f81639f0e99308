"""``atm journal evidence SHA256``: the rows that reference a camera image, and whether its
file is still the one they hashed (kept and intact, deleted by retention, changed)."""

from __future__ import annotations

import os
import shutil

from agent.cli.common import UsageError, journal_to_read, load_config, print_report

SAID = {
    "intact": "kept and intact",
    "deleted": "deleted by retention",
    "changed": "changed! (its SHA-256 is no longer the journal's)",
    "missing": "missing! (not deleted by retention)",
}


def evidence_folder(args, journal: str) -> str:
    """--folder, else the config's evidence.folder, else evidence/ next to the journal."""
    from agent.evidence import default_folder

    if args.folder:
        return args.folder
    configured = "" if args.journal else load_config(args.config).evidence["folder"]
    folder = default_folder(configured, journal)
    if folder is None:
        raise UsageError("no evidence folder: name it with --folder DIR")
    return folder


def cmd_evidence(args) -> int:
    from agent.evidence_check import SHA_PREFIX, check
    from agent.journal_reader import open_readonly

    sha = args.sha256.strip().lower()
    if not SHA_PREFIX.fullmatch(sha):
        raise UsageError(f"SHA256: {args.sha256!r} is not 12 to 64 hex digits")
    path = journal_to_read(args)
    folder = evidence_folder(args, path)
    db = open_readonly(path)
    try:
        report = check(db, sha, folder)
    finally:
        db.close()
    if args.output:
        _copy_out(report, args.output)
    print_report(report, args.json, evidence_text)
    return 0 if report["ok"] else 1


def _copy_out(report: dict, output: str) -> None:
    """-o FILE: a copy of the intact image, never over an existing file."""
    intact = [i for i in report["images"] if i["state"] == "intact"]
    if not intact:
        raise UsageError("-o: no intact image to copy")
    if os.path.lexists(output):
        raise UsageError(f"-o: {output} exists already")
    shutil.copyfile(intact[0]["path"], output)


def evidence_text(report: dict) -> str:
    if not report["images"]:
        return f"no evidence row references {report['sha256']}"
    lines = []
    for image in report["images"]:
        where = f"row {image['row']} ({image['ts']}, session {image['session'] or '-'}, {image['reason']})"
        said = SAID[image["state"]]
        if image["state"] == "deleted":
            said += f" (row {image['deleted_by']['row']}, {image['deleted_by']['ts']})"
        lines.append(f"{where}: {image['file']} {said}")
    return "\n".join(lines)


def register(journal_sub) -> None:
    evidence = journal_sub.add_parser(
        "evidence",
        help="the rows that reference a camera image, and whether its file is intact"
        " (exit 0 intact or deleted by retention, 1 changed, missing or unknown)",
    )
    evidence.add_argument("sha256", metavar="SHA256", help="the image's SHA-256 (or its first 12+ hex digits)")
    evidence.add_argument("--journal", metavar="FILE", help="the journal (default: the config's, as atm run)")
    evidence.add_argument("--config", help="TOML config file")
    evidence.add_argument("--folder", metavar="DIR", help="the evidence folder (default: the config's)")
    evidence.add_argument("-o", "--output", metavar="FILE", help="copy the intact image to this new file")
    evidence.add_argument("--json", action="store_true")
    evidence.set_defaults(func=cmd_evidence)
