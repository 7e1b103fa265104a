"""The mutation suite: plausible wrong versions of the reference must fail the checks.

    python -m tests.mutants              # every mutant, 2 at a time; exit 1 if any survives
    python -m tests.mutants -j 4 --only o3-threshold-strict o4-no-iterative-scan
    python -m tests.mutants --objective 4

Each mutant (tests/mutants/objectiveN.toml) is one textual change of solutions/, with a reason. It is applied to a
scratch copy of solutions/ laid out as a learner's labs/ folder, and graded with the course's own grader
(`grading.grade.grade_submission`, that objective's checks only, stopping at the first failure, in a process forked
from a server that has the dependencies imported). A grading that runs no check at all is *broken*, not a kill: the
suite fails on it. A mutant is killed when it scores less than full marks; a survivor means the checks cannot tell
that mistake from the lesson.
A mutant's `expect` names the check meant to kill it: that check runs first, so a killed mutant usually costs one
check (the others still run if it passes, and any failure kills).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SOLUTIONS = ROOT / "solutions"


@dataclass(frozen=True)
class Mutant:
    id: str
    objective: int
    file: str
    reason: str
    find: str
    replace: str
    expect: str = ""  # the check meant to kill it (run first; any failing check kills it)


def solution_file(objective: int) -> str:
    return (
        f"objective{objective}.py"
        if (SOLUTIONS / f"objective{objective}.py").exists()
        else f"objective{objective}/service.py"
    )


def load_mutants() -> list[Mutant]:
    """Every mutant, validated: a unique id, a reason, and a `find` text that occurs exactly once."""
    mutants: list[Mutant] = []
    for path in sorted(HERE.glob("objective*.toml")):
        objective = int(path.stem.removeprefix("objective"))
        for entry in tomllib.loads(path.read_text(encoding="utf-8"))["mutant"]:
            # `file`: another module of a package objective (relative to solutions/); default its main one
            file = entry.get("file", solution_file(objective))
            source = (SOLUTIONS / file).read_text(encoding="utf-8")
            mutant = Mutant(
                entry["id"], objective, file, entry["reason"], entry["find"], entry["replace"], entry.get("expect", "")
            )
            count = source.count(mutant.find)
            if count != 1:
                raise SystemExit(f"{path.name}: {mutant.id}: its `find` text occurs {count} times in solutions/{file}")
            if mutant.find == mutant.replace or not mutant.reason.strip():
                raise SystemExit(f"{path.name}: {mutant.id}: a mutant needs a change and a reason")
            mutants.append(mutant)
    ids = [m.id for m in mutants]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise SystemExit(f"duplicate mutant ids: {sorted(duplicates)}")
    return mutants


def apply(mutant: Mutant, workdir: Path) -> Path:
    """A learner-shaped copy of solutions/ with the mutant applied; returns the submission folder."""
    labs = workdir / mutant.id / "labs"
    shutil.copytree(SOLUTIONS, labs, ignore=shutil.ignore_patterns("__pycache__"))
    target = labs / mutant.file
    target.write_text(target.read_text(encoding="utf-8").replace(mutant.find, mutant.replace, 1), encoding="utf-8")
    return labs.parent


def grade(mutant: Mutant, workdir: Path) -> tuple[str, str, float]:
    """(killed | survived | broken, what killed or broke it, seconds). Broken: no check ran at all (the grading
    itself failed), which says nothing about the checks — never counted as a kill."""
    from grading.grade import grade_submission
    from tests.mutants.forked import run_forked

    started = time.perf_counter()
    score = grade_submission(
        apply(mutant, workdir),
        objectives=[mutant.objective],
        timeout=120,
        total_timeout=600,
        run=run_forked,
        # stop at the first failure, the expected killer first: a killed mutant costs one check, not the file
        pytest_args=["-x", "-p", "tests.mutants.ordering"],
        env={"COURSE_RUN_FIRST": mutant.expect or ""},
    )
    seconds = time.perf_counter() - started
    if score.error and not score.checks:
        return "broken", score.error[:300], seconds
    failed = [c for c in score.checks if c.outcome in ("failed", "error")]
    if failed:
        return "killed", failed[0].title[:100], seconds
    if score.total < score.max_points:
        return "killed", "(unrun checks)", seconds
    return "survived", "", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="mutant ids")
    parser.add_argument("--objective", type=int)
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)

    mutants = load_mutants()
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutants: {sorted(unknown)}")
        mutants = [m for m in mutants if m.id in args.only]
    if args.objective:
        mutants = [m for m in mutants if m.objective == args.objective]
    if args.list:
        for m in mutants:
            print(f"{m.id:<40} {m.reason}")
        return 0

    from course import database

    database.start()
    started = time.perf_counter()
    survivors: list[Mutant] = []
    broken: list[tuple[Mutant, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="mutants-") as tmp,
        ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool,
    ):
        futures = {pool.submit(grade, m, Path(tmp)): m for m in mutants}
        for done, future in enumerate(as_completed(futures), start=1):
            mutant = futures[future]
            outcome, by, seconds = future.result()
            if outcome == "survived":
                survivors.append(mutant)
            elif outcome == "broken":
                broken.append((mutant, by))
            detail = {"killed": f"by: {by}", "survived": mutant.reason, "broken": f"no check ran: {by[:100]}"}
            print(
                f"[{done:>3}/{len(mutants)}] {outcome.upper() if outcome != 'killed' else 'killed  '} "
                f"{mutant.id:<38} {seconds:5.1f} s  {detail[outcome]}",
                flush=True,
            )
    killed = len(mutants) - len(survivors) - len(broken)
    print(f"\nmutants killed: {killed}/{len(mutants)} in {time.perf_counter() - started:.0f} s")
    for mutant in survivors:
        print(f"  survived: {mutant.id} (objective {mutant.objective}): {mutant.reason}")
    for mutant, error in broken:
        print(f"  broken: {mutant.id}: the grading itself failed, so it proves nothing: {error}")
    return 1 if survivors or broken else 0


if __name__ == "__main__":
    sys.exit(main())
