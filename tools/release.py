"""Write the student repository: `python tools/release.py DEST` (or `make release DEST=…`).

What a class receives: the starter labs, the notebooks, the checks with their hints, the course runtime, the
learner's workspace (JupyterLab and VS Code settings, devcontainer, compose), a README without the instructor and
contributor sections, a GitHub Classroom workflow that grades every push, and a `make test` of its own — and no
reference solution anywhere:

* `solutions/`, the mutation suite, the lab generator and the benchmarks (they import the reference) stay behind;
* only the tests that need no reference are shipped (SHIPPED_TESTS), and `make test` in the release runs those;
* the release is checked before it is written: no `BEGIN SOLUTION` marker and no line of a reference solution in
  any file (the same squashed-line comparison the hint tests use), and no git history (a plain folder).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Copied as they are (folders recursively), when present.
SHIPPED = [
    "course",
    "checks",
    "grading",
    "labs",
    "notebooks",
    ".jupyter",
    ".vscode",
    ".devcontainer",
    "deploy",
    ".ci",
    "requirements.lock",
    "requirements.txt",
    "requirements-minilm.txt",
    "pyproject.toml",
    "docker-compose.yml",
    ".gitignore",
    "jupytext.toml",
]
#: The tests that need no reference solution: the runtime, the learner's workspace, and the starter's own proofs
#: (every check fails on it with a hint, every notebook stops at a step to write with a short note).
SHIPPED_TESTS = [
    "__init__.py",
    "databases.py",
    "servers.py",
    "test_corpus.py",
    "test_database.py",
    "test_embeddings.py",
    "test_lab.py",
    "test_measure.py",
    "test_notebook_errors.py",
    "test_starter.py",
    "test_text.py",
]
#: Never in a release, wherever they are.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "workspaces", ".pytest_cache")

#: The student repository's test command: the shipped tests, on the course's own database.
RELEASE_TEST_RECIPE = """test: install browser
\t$(PY) -m course setup
\t$(PY) -m pytest tests -p no:nbval -n 2
"""

#: The workflow GitHub Classroom runs on every push: one grading run, points per objective to the official reporter.
#: {course} is how the course's checks and grader arrive: pinned (the instructor's repository at a fixed commit,
#: checked out beside the student's), or the student repository's own (which its owner can edit: not for marks).
CLASSROOM_WORKFLOW = """\
# Grades every push with the course's checks and reports the points to GitHub Classroom (and the job summary).
name: Autograding Tests
"on":
  push:
  repository_dispatch:
  workflow_dispatch:
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 30
    steps:
{course}
      - name: Grade every objective
        id: grade
        working-directory: course
        run: .venv/bin/python -m grading {submission} --format classroom --out ../grade.json
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}
        with:
          runners: {runners}
"""

#: Python and the course, installed from the lock of the checkout in course/.
INSTALL = """\
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: course/requirements.lock
      - name: Install the course
        run: make -C course install"""

#: The course from the instructor's repository at a fixed commit; the student's repository only provides labs/.
PINNED_COURSE = """\
      - uses: actions/checkout@v4
        with:
          path: submission
      - name: The course's checks and grader, pinned (the student's copy of checks/ is not used)
        uses: actions/checkout@v4
        with:
          repository: {repository}
          ref: {ref}
          path: course
          token: ${{{{ secrets.COURSE_CHECKS_TOKEN || github.token }}}}
{install}"""

#: Without --checks-from: the student repository grades itself, and the summary says so.
OWN_COURSE = """\
      - uses: actions/checkout@v4
        with:
          path: course
{install}
      - name: Note that the checks are this repository's own
        run: >-
          echo "Graded with this repository's own checks/ (not pinned; see the course README)."
          >> "$GITHUB_STEP_SUMMARY"
"""


def classroom_workflow(objectives: list[int], checks_from: str | None = None) -> str:
    """The Classroom workflow; `checks_from` ("owner/repository@commit") pins the checks and grader."""
    runners = [f"objective{n}" for n in objectives]
    env = "\n".join(f'          {r.upper()}_RESULTS: "${{{{ steps.grade.outputs.{r} }}}}"' for r in runners)
    if checks_from:
        match = re.fullmatch(r"([\w.-]+/[\w.-]+)@([0-9a-f]{7,40}|v?[\w.-]+)", checks_from)
        if not match:
            raise SystemExit(f"--checks-from needs owner/repository@commit, not {checks_from!r}")
        course = PINNED_COURSE.format(repository=match.group(1), ref=match.group(2), install=INSTALL)
        submission = "../submission"
    else:
        course, submission = OWN_COURSE.format(install=INSTALL).rstrip("\n"), "."
    return CLASSROOM_WORKFLOW.format(course=course, submission=submission, env=env, runners=",".join(runners))


def learner_readme(text: str) -> str:
    """The README without the parts between `<!-- instructors -->` and `<!-- /instructors -->`, and naming the
    benchmarks (which stay with the authors' repository) as measurements, not commands a learner can run."""
    text = re.sub(r"<!-- instructors -->.*?<!-- /instructors -->\n?", "", text, flags=re.S)
    return re.sub(r"`\.venv/bin/python -m bench ([a-z_|]+)`", r"the course's `bench \1` benchmark", text)


def release_makefile(text: str) -> str:
    """The Makefile with the student repository's `test` recipe, without targets that need the reference, and
    `make serve` running the learner's own service."""
    text = re.sub(r"^test: .*?\n(?=\n)", RELEASE_TEST_RECIPE.rstrip("\n") + "\n", text, count=1, flags=re.S | re.M)
    text = re.sub(r"^(# [^\n]*\n)*(labs|bench|release|format): .*?\n(?=\n|\Z)", "", text, flags=re.S | re.M)
    text = re.sub(r'^\t@echo "make (labs|bench|release|format) .*\n', "", text, flags=re.M)
    text = re.sub(r"^NBVAL .*\n", "", text, flags=re.M)
    text = re.sub(
        r'^\t@echo "make test .*$',
        "\t@echo \"make test         install and run the course's tests "
        "(runtime, workspace, the starter's checks and notebooks)\"",
        text,
        count=1,
        flags=re.M,
    )
    text = text.replace("(course, labs, solutions, checks)", "(course, labs, checks)")
    # the learner's lint: the given code and the learner's labs by the labs' rules; formatting is the learner's choice
    text = text.replace(
        "ruff check course solutions checks grading bench tools tests labs",
        "ruff check course checks grading tests labs",
    )
    text = text.replace(
        "ruff format --check course solutions checks grading bench tools tests labs", "ruff format --check course"
    )
    text = text.replace("$(VENV)/bin/mypy\n", "$(VENV)/bin/mypy course\n")
    # the architecture guard is the authors' (tools/ is not shipped)
    text = text.replace("\t$(PY) tools/layers.py\n", "")
    return text.replace("--target $(or $(COURSE_TARGET),solutions)", "--target $(or $(COURSE_TARGET),labs)")


# ---------------------------------------------------------------------------------------------------------------------
# What must never be shipped
# ---------------------------------------------------------------------------------------------------------------------
BEGIN = re.compile(r"^\s*# BEGIN SOLUTION")
END = re.compile(r"^\s*# END SOLUTION\s*$")


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def reference_lines(solutions: Path | None = None) -> set[str]:
    """Every line of code inside a solution region (squashed, at least 24 characters), minus lines that also occur
    outside the regions (given code the starter shares) or in the course runtime and checks (idioms such as
    `async with conn.transaction():` that the shipped runtime uses on its own account)."""
    solutions = solutions or ROOT / "solutions"
    inside: set[str] = set()
    outside: set[str] = set()
    for folder in ("course", "checks"):
        for file in sorted((solutions.parent / folder).rglob("*.py")):
            outside |= {squash(line) for line in file.read_text(encoding="utf-8").splitlines()}
    for file in sorted(solutions.rglob("*.py")):
        for region, line in region_lines(file):
            if not line.strip().startswith("#") and len(squash(line)) >= 24:
                (inside if region else outside).add(squash(line))
    return inside - outside


def region_lines(path: Path):
    """(inside a solution region?, line) for every line of `path` except the markers themselves."""
    region = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if BEGIN.match(line):
            region = True
        elif END.match(line):
            region = False
        else:
            yield region, line


ANSI = re.compile(r"\x1b\[[0-9;]*m")
TRACEBACK_PREFIX = re.compile(r"^\s*-*>?\s*\d+\s")


def notebook_text(raw: str) -> str:
    """A notebook as the lines a person reads: every cell's source and every output's text, traceback and data (a
    saved traceback quotes the code that raised). The raw JSON would hide them behind quotes and escapes."""
    import json

    notebook = json.loads(raw)
    parts = []
    for cell in notebook.get("cells", []):
        parts.append("".join(cell.get("source", [])))
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", [])))
            # IPython prefixes each quoted line with its number (and an arrow): the code is what follows
            for line in ANSI.sub("", "\n".join(output.get("traceback", []))).splitlines():
                parts.append(TRACEBACK_PREFIX.sub("", line))
            for value in (output.get("data") or {}).values():
                parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def leaks(dest: Path, reference: set[str]) -> list[str]:
    """Files of `dest` that contain a solution marker or a line of the reference (notebooks read as notebooks)."""
    problems = []
    for file in sorted(p for p in dest.rglob("*") if p.is_file()):
        try:
            text = file.read_text(encoding="utf-8")
            if file.suffix == ".ipynb":
                text = notebook_text(text)
        except (UnicodeDecodeError, OSError, ValueError):
            continue
        if any(BEGIN.match(line) or END.match(line) for line in text.splitlines()):
            problems.append(f"{file.relative_to(dest)}: a solution marker")
        lines = {squash(line) for line in text.splitlines()}
        found = sorted(lines & reference)
        if found:
            problems.append(f"{file.relative_to(dest)}: {len(found)} line(s) of the reference, e.g. {found[0][:80]}")
    if (dest / "solutions").exists() or (dest / ".git").exists():
        problems.append("solutions/ or .git/ is in the release")
    return problems


def generated_are_current() -> list[str]:
    """What is stale: labs/ and the notebooks must be what solutions/ and the notebook sources generate."""
    import subprocess
    import sys

    stale = []
    for script in ("tools/make_labs.py", "tools/notebooks/build.py"):
        result = subprocess.run([sys.executable, script, "--check"], cwd=ROOT, capture_output=True, text=True)
        if result.returncode:
            stale.append(f"{script} --check: {(result.stdout + result.stderr).strip()[-300:]}")
    return stale


def build(dest: Path, *, force: bool = False, checks_from: str | None = None) -> Path:
    if stale := generated_are_current():
        raise SystemExit("the release would ship stale generated files (run `make format`):\n  " + "\n  ".join(stale))
    dest = dest.resolve()
    if dest == ROOT or ROOT in dest.parents:
        raise SystemExit(f"refusing to write the release inside the course repository: {dest}")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise SystemExit(f"{dest} is not empty (use --force to replace it)")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=IGNORED)
        elif source.exists():
            shutil.copy2(source, dest / name)  # copy2 keeps mtimes: make sees an installed .venv as up to date
    (dest / "tests").mkdir()
    for name in SHIPPED_TESTS:
        shutil.copy2(ROOT / "tests" / name, dest / "tests" / name)
    (dest / "README.md").write_text(learner_readme((ROOT / "README.md").read_text(encoding="utf-8")), encoding="utf-8")
    (dest / "Makefile").write_text(release_makefile((ROOT / "Makefile").read_text(encoding="utf-8")), encoding="utf-8")
    shutil.copystat(ROOT / "Makefile", dest / "Makefile")
    workflows = dest / ".github" / "workflows"
    workflows.mkdir(parents=True)
    objectives = sorted(
        int(m.group(1))
        for p in (ROOT / "checks").glob("test_objective*.py")
        if (m := re.fullmatch(r"test_objective(\d+)\.py", p.name))
    )
    (workflows / "classroom.yml").write_text(classroom_workflow(objectives, checks_from), encoding="utf-8")
    problems = leaks(dest, reference_lines())
    if problems:
        shutil.rmtree(dest)
        raise SystemExit("the release would ship solution text; nothing written:\n  " + "\n  ".join(problems))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/release.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, nargs="?", help="an empty or new folder")
    parser.add_argument("--force", action="store_true", help="replace DEST if it is not empty")
    parser.add_argument(
        "--checks-from",
        metavar="OWNER/REPO@COMMIT",
        help="grade on GitHub Classroom with the checks and grader of this repository at this commit",
    )
    parser.add_argument(
        "--pytest-ignore-shipped",
        action="store_true",
        help="print --ignore options for the shipped tests (make test runs those in the release)",
    )
    args = parser.parse_args(argv)
    if args.pytest_ignore_shipped:
        print(" ".join(f"--ignore=tests/{name}" for name in SHIPPED_TESTS if name.startswith("test_")))
        return 0
    if args.dest is None:
        parser.error("DEST is required")
    dest = build(args.dest, force=args.force, checks_from=args.checks_from)
    files = [p for p in dest.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(
        f"student release: {dest} ({len(files)} files, {size / 1e6:.1f} MB), no solution text; "
        f"`cd {dest} && git init && make test`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
