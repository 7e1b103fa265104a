"""Learner CLI: `python -m checks` (or `make check`) shows your progress; `python -m checks 1` grades one objective.

python -m checks                        # progress over every objective, then what to fix next
python -m checks 1                      # your labs/objective1.py, every check with hints
python -m checks 1 --more-hints         # with a second, more explicit hint where there is one
python -m checks 1 --target solutions   # the reference, to see what passing looks like
python -m checks all                    # every objective in full
"""

from __future__ import annotations

import argparse
import re
import sys

from checks.results import CheckResult, shown_message, totals
from checks.runner import CHECKS_DIR, run_checks


def available() -> list[int]:
    """The objectives that have checks: every checks/test_objectiveN.py (a new objective needs no list edited)."""
    return sorted(int(p.stem.removeprefix("test_objective")) for p in CHECKS_DIR.glob("test_objective*.py"))


def assigned() -> list[int]:
    """The objectives the overview covers: COURSE_OBJECTIVES (e.g. "1,2,3", an instructor's "assigned so far"), else
    all of them."""
    from course.settings import get_settings

    chosen = get_settings().course_objectives
    if not chosen:
        return available()
    wanted = {int(n) for n in chosen.split(",")}
    return [n for n in available() if n in wanted]


def titles() -> dict[int, str]:
    """Each objective's TITLE line, read from its checks module's source (importing it would import pytest)."""
    found = {}
    for n in available():
        source = (CHECKS_DIR / f"test_objective{n}.py").read_text(encoding="utf-8")
        match = re.search(r'^TITLE = "([^"]+)"$', source, re.M)
        found[n] = match.group(1) if match else f"objective {n}"
    return found


def _target_name(target: str | None) -> str:
    from course.target import resolve_target

    return resolve_target(target)


def print_objective(
    objective: int, results: list[CheckResult], target: str, only_failures: bool = False, more_hints: bool = False
) -> None:
    """✅/❌ per check; the cases of one parametrised check share a line, and a failure that repeats the one
    above (one root cause, several checks) is not printed again."""
    print(f"\nObjective {objective} — {titles().get(objective, '')}  (grading {target}/)")
    groups: dict[str, list[CheckResult]] = {}
    for r in results:
        groups.setdefault(r.title.split(" [", 1)[0], []).append(r)
    last_message = None
    for title, cases in groups.items():
        failed = [r for r in cases if not r.passed]
        if only_failures and not failed:
            continue
        count = f" ({len(cases) - len(failed)} of {len(cases)} cases pass)" if len(cases) > 1 and failed else ""
        print(f"  {'❌' if failed else '✅'} {title}{count}")
        if not failed:
            continue
        if 1 < len(cases) and len(failed) < len(cases):
            names = [r.title.split(" [", 1)[1][:-1] for r in failed if " [" in r.title]
            print("       failing: " + ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else ""))
        first = failed[0]
        message = shown_message(first.message) if first.message else first.outcome
        if message == last_message:
            print("       (the same error as above: fix that first)")
        else:
            print("       " + message.replace("\n", "\n       "))
        if first.hint:
            print(f"       hint: {first.hint}")
        if more_hints and first.more:
            print(f"       more: {first.more}")
        last_message = message
    score = totals(results)
    print(f"  Score: {score.points:g}/{score.max_points:g} points ({score.passed} of {score.checks} checks passed)")
    if not more_hints and any(r.more for r in results if not r.passed):
        print(
            f"  Stuck? `make check OBJ={objective} MORE=1` (in the notebook: `check({objective}, more_hints=True)`) "
            "gives a more explicit hint."
        )


def report(objective: int, target: str | None, more_hints: bool = False) -> bool:
    results = run_checks(objective, target)
    print_objective(objective, results, _target_name(target), more_hints=more_hints)
    return bool(results) and all(r.passed for r in results)


def _run_one(n: int, target: str | None) -> list[CheckResult]:
    return run_checks(n, target)


def _run_all(objectives: list[int], target: str | None):
    """(objective, results) in order, two objectives graded at a time in forked processes where the platform has
    fork (each pytest run is its own process, so they cannot share one): the overview takes about half as long."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods() or len(objectives) < 2:
        for n in objectives:
            yield n, _run_one(n, target)
        return
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [(n, pool.submit(_run_one, n, target)) for n in objectives]
        for n, future in futures:
            yield n, future.result()


def progress(target: str | None) -> bool:
    """One line per objective (checks passed, points), then the failing checks of the first unfinished one."""
    shown = _target_name(target)
    per_objective = {}
    print(f"Your progress (grading {shown}/)\n")
    print(f"  {'objective':<46} {'checks':>8} {'points':>9}")
    for n, results in _run_all(assigned(), target):
        per_objective[n] = results
        part = totals(results)
        mark = "✅" if results and part.passed == part.checks else ("❌" if part.passed == 0 else "…")
        counts = f"{part.passed:>3}/{part.checks:<4} {part.points:>4g}/{part.max_points:<4g}"
        print(f"  {mark} {n} {titles().get(n, ''):<42} {counts}", flush=True)
    whole = totals(r for results in per_objective.values() for r in results)
    print(f"  {'total':<46} {'':>8} {whole.points:>4g}/{whole.max_points:<4g}")
    unfinished = [n for n, results in per_objective.items() if not results or not all(r.passed for r in results)]
    if not unfinished:
        print("\nEvery check passes. Well done!")
        return True
    n = unfinished[0]
    print(f"\nNext: objective {n}. Open notebooks/{n:02d}_… beside labs/objective{n}, or run `make check OBJ={n}`.")
    print_objective(n, per_objective[n], shown, only_failures=True)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "objective",
        nargs="?",
        default=None,
        help="objective number, or 'all'; leave it out for your progress over every objective",
    )
    parser.add_argument("--target", choices=["labs", "solutions"], default=None)
    parser.add_argument(
        "--more-hints", action="store_true", help="show the second, more explicit hint of a failing check"
    )
    args = parser.parse_args(argv)
    if args.objective is None:
        return 0 if progress(args.target) else 1
    numbers = available() if args.objective == "all" else [int(args.objective)]
    ok = all([report(n, args.target, args.more_hints) for n in numbers])
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m checks | head` is fine
        sys.exit(1)
