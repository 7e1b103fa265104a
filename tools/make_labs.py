"""Generate labs/ (the learner's starter code) from solutions/ (the reference), the single source of truth.

In solutions/, each part a learner must write is a marked region:

    def enable_extension(conn):
        \"\"\"Docstring kept in the lab.\"\"\"
        # BEGIN SOLUTION hint: what to do, shown to the learner
        ...reference code...
        # END SOLUTION

In labs/ the region becomes `raise NotImplementedError("TODO: <hint>")`; everything else (imports, signatures,
docstrings, helpers) is copied. Each generated file records a fingerprint of what was generated, so a lab the
learner has edited is never overwritten without --force.

    python tools/make_labs.py           # (re)generate labs/, keeping edited labs
    python tools/make_labs.py --check   # exit 1 if labs/ is not exactly what solutions/ generates
    python tools/make_labs.py --force   # regenerate everything, discarding edits
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?:\s+hint:\s*(?P<hint>.*?))?\s*$")
STARTER_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION starter\s*$")
STARTER_LINE = re.compile(r"^(?P<indent>\s*)# starter: ?(?P<code>.*)$")
HINT_MORE = re.compile(r"^\s*#\s{2,}(?P<more>\S.*?)\s*$")  # a hint's continuation: "#   more words"
END = re.compile(r"^\s*# END SOLUTION\s*$")
LINE_LENGTH = 120  # pyproject.toml's [tool.ruff] line-length
YIELD = re.compile(r"(^|[\s(=])yield\b")
FINGERPRINT = re.compile(r"^# lab-fingerprint: (?P<digest>[0-9a-f]{16})$", re.MULTILINE)


class MarkerError(ValueError):
    pass


def strip_solutions(source: str, origin: str = "<source>") -> str:
    """Replace every BEGIN/END SOLUTION region with a NotImplementedError carrying the region's hint."""
    out: list[str] = []
    in_region = False
    start_line = 0
    region_indent = ""
    region_yields = False
    starter = False
    hint: list[str] = []  # the open region's hint, until its first line that is not a continuation
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if hint and not (in_region and HINT_MORE.match(line)):
            out.append(_todo(region_indent, " ".join(hint)))
            hint = []
        begin = BEGIN.match(line)
        starter_begin = STARTER_BEGIN.match(line)
        if starter_begin:
            # a region whose lab version is given as "# starter: <code>" lines (for code that must still import,
            # like a class body); the starter lines are emitted uncommented, the rest is dropped
            if in_region:
                raise MarkerError(f"{origin}:{number}: BEGIN SOLUTION inside another region (from line {start_line})")
            in_region, start_line, region_indent = True, number, starter_begin["indent"]
            region_yields, starter = False, True
        elif begin:
            if in_region:
                raise MarkerError(f"{origin}:{number}: BEGIN SOLUTION inside another region (from line {start_line})")
            in_region, start_line, region_indent, region_yields, starter = True, number, begin["indent"], False, False
            hint = [begin["hint"] or "implement this"]
        elif hint and in_region and (more := HINT_MORE.match(line)):
            hint.append(more["more"])
        elif END.match(line):
            if not in_region:
                raise MarkerError(f"{origin}:{number}: END SOLUTION without BEGIN")
            if region_yields:
                # keep a generator (e.g. an @asynccontextmanager) a generator, so the TODO is what the learner sees
                out.append(f"{region_indent}yield  # unreachable: keeps this function a generator like the solution\n")
            in_region = False
        elif in_region and starter:
            code = STARTER_LINE.match(line)
            if code:
                out.append(f"{code['indent']}{code['code']}\n")
        elif in_region and YIELD.search(line):
            region_yields = True
        elif not in_region:
            out.append(line)
    if in_region:
        raise MarkerError(f"{origin}:{start_line}: BEGIN SOLUTION is never closed")
    return "".join(out)


def _todo(indent: str, hint: str) -> str:
    """The lab's `raise NotImplementedError("TODO: <hint>")`, laid out as `ruff format` would lay it out."""
    text = "TODO: " + hint.replace("\\", "\\\\")
    quote = "'" if text.count('"') > text.count("'") else '"'  # ruff's choice: the quote that needs fewer escapes
    message = quote + text.replace(quote, "\\" + quote) + quote
    line = f"{indent}raise NotImplementedError({message})\n"
    if len(line) - 1 <= LINE_LENGTH:
        return line
    return f"{indent}raise NotImplementedError(\n{indent}    {message}\n{indent})\n"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def render_lab(solution: Path, solutions_dir: Path) -> str:
    """The full text of the lab generated from one solutions file."""
    relative = solution.relative_to(solutions_dir.parent).as_posix()
    source = solution.read_text(encoding="utf-8")
    if solution.suffix != ".py":
        return source  # pages, scripts and SQL are given as they are
    body = strip_solutions(source, relative)
    if body == source and solution.name == "__init__.py" and not source.strip():
        return source  # an empty package marker stays empty
    header = (
        f"# Starter code generated from {relative} by tools/make_labs.py. This file is yours: fill in every TODO.\n"
        f"# `python -m checks N` (or check(N) in the notebook) grades it and gives hints.\n"
    )
    body = header + body
    return f"# lab-fingerprint: {_digest(body)}\n" + body


def is_edited(text: str) -> bool:
    """True if a generated lab no longer matches its own fingerprint, i.e. someone changed it."""
    match = FINGERPRINT.match(text)
    if not match:
        return bool(text.strip())  # no fingerprint: hand-written, treat as edited
    body = text[match.end() + 1 :]
    return match["digest"] != _digest(body)


def plan(solutions_dir: Path, labs_dir: Path) -> dict[Path, str]:
    """Every lab file path and the text it should have."""
    return {
        labs_dir / src.relative_to(solutions_dir): render_lab(src, solutions_dir)
        for src in sorted(solutions_dir.rglob("*"))
        if src.is_file() and "__pycache__" not in src.parts and src.suffix in {".py", ".html", ".js", ".css", ".sql"}
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether labs/ is up to date")
    parser.add_argument("--force", action="store_true", help="overwrite labs even if they were edited")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--labs", type=Path, default=ROOT / "labs")
    args = parser.parse_args(argv)

    try:
        wanted = plan(args.solutions, args.labs)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # editors' own files (__pycache__, JupyterLab's .ipynb_checkpoints) are not part of the labs
    existing = (
        {p for p in args.labs.rglob("*") if p.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(p.parts)}
        if args.labs.exists()
        else set()
    )
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    orphans = sorted(existing - set(wanted))

    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}", file=sys.stderr)
        for p in orphans:
            print(f"not generated from solutions/: {p}", file=sys.stderr)
        if stale or orphans:
            print("labs/ is out of date: run `python tools/make_labs.py`.", file=sys.stderr)
            return 1
        print(f"labs/ is up to date ({len(wanted)} files).")
        return 0

    skipped = []
    for path in stale:
        if path.exists() and is_edited(path.read_text(encoding="utf-8")) and not args.force:
            skipped.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    for path in skipped:
        print(f"kept {path}: it has been edited (use --force to overwrite)", file=sys.stderr)
    for path in orphans:
        print(f"note: {path} has no counterpart in solutions/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
