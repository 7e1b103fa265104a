"""Grade a whole class: `python -m checks.grade SUBMISSION... --out scores.json` (or `make grade`).

A submission is a learner's labs/ folder, or a copy of the whole repository (its labs/ is used). Each one is graded
in its own process against the course's checks (plus instructor-only checks from --hidden), with:

* its own throw-away databases (named with a per-submission prefix, all dropped afterwards, even after a crash);
* a time limit per check (--timeout) and for the whole submission, so a hang costs only that submission's points;
* results streamed as they happen, so a crash keeps the points already earned.

Points per check come from `@pytest.mark.points(n)` next to the check (default 1). Hidden checks are test files
named `test_objective<N>_<anything>.py` in the --hidden folder; they use the same fixtures as the shipped checks.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "checks"


@dataclass
class CheckScore:
    nodeid: str
    objective: int
    title: str
    max_points: float
    points: float = 0.0
    outcome: str = "not run"  # passed | failed | error | skipped | not run
    message: str = ""
    hint: str = ""


@dataclass
class SubmissionScore:
    name: str
    path: str
    total: float = 0.0
    max_points: float = 0.0
    objectives: dict[str, dict] = field(default_factory=dict)
    checks: list[CheckScore] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def find_labs(path: Path) -> Path:
    """The labs folder of a submission: `path/labs` for a repository copy, else `path` itself."""
    path = path.resolve()
    if (path / "labs").is_dir():
        return path / "labs"
    if any(path.glob("objective*.py")) or any(path.glob("objective*/__init__.py")):
        return path
    raise ValueError(f"{path} has neither a labs/ folder nor objective*.py files")


def _db_prefix(path: Path) -> str:
    """Names of this submission's throw-away databases start with this, so leftovers can be dropped."""
    return f"g{hashlib.sha1(str(path).encode()).hexdigest()[:8]}_"


def _prepare_checks(workdir: Path, hidden: Path | None, objectives: list[int] | None) -> list[Path]:
    """A throwaway copy of the checks package (+ hidden checks) and a `labs` link, importable from workdir."""
    target = workdir / "checks"
    shutil.copytree(CHECKS, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")  # pytest settings (asyncio mode, timeouts)
    if hidden:
        for path in sorted(hidden.glob("test_objective*.py")):
            shutil.copy(path, target / path.name)
    files = sorted(target.glob("test_objective*.py"))
    if objectives:
        files = [f for f in files if int(re.match(r"test_objective(\d+)", f.name).group(1)) in objectives]
    return files


def grade_submission(path: Path, *, hidden: Path | None = None, objectives: list[int] | None = None,
                     timeout: float = 60.0, total_timeout: float = 1200.0,
                     stop_at_first_failure: bool = False, run_first: tuple[str, ...] = ()) -> SubmissionScore:
    """Grade one submission in its own process. stop_at_first_failure (pytest -x) is for callers that only need to
    know whether everything passes, such as the mutation suite: the unrun checks score 0. run_first names checks
    (function names) to run before the others."""
    from course import database

    started = time.perf_counter()
    score = SubmissionScore(name=path.name if path.name != "labs" else path.parent.name, path=str(path))
    prefix = _db_prefix(path)
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        workdir = Path(tmp)
        try:
            labs = find_labs(path)
        except ValueError as exc:
            score.error = str(exc)
            return score
        (workdir / "labs").symlink_to(labs, target_is_directory=True)
        files = _prepare_checks(workdir, hidden, objectives)
        results = workdir / "results.jsonl"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]), "COURSE_TARGET": "labs",
               "COURSE_RESULTS_FILE": str(results), "COURSE_TMP_PREFIX": prefix, "PYTHONDONTWRITEBYTECODE": "1",
               "COURSE_RUN_FIRST": ",".join(run_first)}
        command = [sys.executable, "-m", "pytest", *map(str, files), "-p", "checks.reporting", "-p", "checks.ordering",
                   "-p", "no:cacheprovider",
                   "-p", "no:nbval", "-q", "--tb=no", "--target", "labs", "-o", f"timeout={timeout}",
                   "--rootdir", str(workdir)] + (["-x"] if stop_at_first_failure else [])
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=total_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            score.error = f"stopped after {total_timeout:g} s"
        if process.returncode not in (0, 1) and score.error is None:
            score.error = f"the checks ended abnormally (exit {process.returncode}): {output.strip()[-500:]}"
        _read_results(score, results)
        for check in score.checks:  # show the learner's own path, not the grader's temporary link
            check.message = check.message.replace(str(workdir / "labs"), str(labs))
        if not score.checks and score.error is None:
            score.error = f"no checks ran: {output.strip()[-800:]}"
    try:
        database.drop_databases_with_prefix(prefix)
    except Exception as exc:  # noqa: BLE001 — cleanup must not cost the learner points
        print(f"warning: could not drop {prefix}* databases: {exc}", file=sys.stderr)
    _total(score)
    score.seconds = round(time.perf_counter() - started, 2)
    return score


def _read_results(score: SubmissionScore, results: Path) -> None:
    checks: dict[str, CheckScore] = {}
    if not results.exists():
        return
    for line in results.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if record["event"] == "collected":
            checks[record["nodeid"]] = CheckScore(record["nodeid"], record["objective"], record["title"], record["points"])
            continue
        check = checks.get(record["nodeid"])
        if check is None or check.outcome in ("failed", "error"):
            continue  # the first failure is the one that counts
        if record["outcome"] == "failed":
            check.outcome = "failed" if record["when"] == "call" else "error"
            check.message, check.hint = record["message"], record["hint"]
        elif record["outcome"] == "skipped":
            check.outcome = "skipped"
        elif record["when"] == "call":
            check.outcome = "passed"
    for check in checks.values():
        if check.outcome == "not run":
            check.message = "did not finish (the submission hung past the time limit or crashed)"
        check.points = check.max_points if check.outcome == "passed" else 0.0
    score.checks = list(checks.values())


def _total(score: SubmissionScore) -> None:
    score.objectives = {}
    for check in score.checks:
        part = score.objectives.setdefault(str(check.objective), {"points": 0.0, "max_points": 0.0, "passed": 0, "checks": 0})
        part["points"] += check.points
        part["max_points"] += check.max_points
        part["passed"] += check.outcome == "passed"
        part["checks"] += 1
    score.total = sum(c.points for c in score.checks)
    score.max_points = sum(c.max_points for c in score.checks)


def write_junit(score: SubmissionScore, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suite = ET.Element("testsuite", name=score.name, tests=str(len(score.checks)),
                       failures=str(sum(c.outcome == "failed" for c in score.checks)),
                       errors=str(sum(c.outcome in ("error", "not run") for c in score.checks)))
    for check in score.checks:
        case = ET.SubElement(suite, "testcase", classname=f"objective{check.objective}", name=check.title)
        if check.outcome in ("failed", "error", "not run"):
            tag = "failure" if check.outcome == "failed" else "error"
            ET.SubElement(case, tag, message=check.message[:500]).text = check.hint
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', score.name)}.xml"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="labs/ folders or repository copies")
    parser.add_argument("--out", type=Path, default=Path("scores.json"))
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--junit", type=Path, help="folder for one JUnit XML file per submission")
    parser.add_argument("--hidden", type=Path, help="folder of instructor-only test_objective<N>_*.py checks")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded in parallel")
    parser.add_argument("--objectives", help="comma-separated objectives to grade (default: all)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per check")
    parser.add_argument("--total-timeout", type=float, default=1200.0, help="seconds per submission")
    args = parser.parse_args(argv)
    objectives = [int(x) for x in args.objectives.split(",")] if args.objectives else None
    missing = [str(p) for p in args.submissions if not p.exists()]
    if missing:  # a typo in a path must not produce (or overwrite) a scores file
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from course import database

    database.start()
    scores: list[SubmissionScore] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool, \
            tqdm(total=len(args.submissions), desc="Grading", unit="submission") as bar:
        futures = {pool.submit(grade_submission, path, hidden=args.hidden, objectives=objectives,
                               timeout=args.timeout, total_timeout=args.total_timeout): path for path in args.submissions}
        for future in as_completed(futures):
            scores.append(future.result())
            bar.update(1)
    scores.sort(key=lambda s: s.name)

    args.out.write_text(json.dumps({"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "submissions": [asdict(s) for s in scores]}, indent=2), encoding="utf-8")
    numbers = sorted({o for s in scores for o in s.objectives}, key=int)
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["submission", "total", "max_points", *[f"objective{n}" for n in numbers], "error"])
            for s in scores:
                writer.writerow([s.name, s.total, s.max_points, *[s.objectives.get(n, {}).get("points", 0) for n in numbers], s.error or ""])
    if args.junit:
        for s in scores:
            write_junit(s, args.junit)

    width = max(len(s.name) for s in scores)
    print(f"\n{'submission':<{width}}  {'total':>11}  " + "  ".join(f"obj{n:>3}" for n in numbers))
    for s in scores:
        cells = "  ".join(f"{s.objectives.get(n, {}).get('points', 0):>6g}" for n in numbers)
        print(f"{s.name:<{width}}  {s.total:>5g}/{s.max_points:<5g}  {cells}" + (f"  ! {s.error}" if s.error else ""))
    print(f"\nscores written to {args.out}" + (f", {args.csv}" if args.csv else "") + (f", {args.junit}/" if args.junit else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
