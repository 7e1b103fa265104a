"""The architecture as an import contract, checked in well under a second (`make lint`):

    bench, tools, tests          on top: may import anything below
    grading                      the class grader: runs the checks, may import course and checks
    labs, solutions, checks      the objectives and their checks: may import course, not each other's layer above
    course                       the runtime, at the bottom: imports none of the packages above
    course.experiments           helpers for notebooks and benchmarks: only tools, bench, tests and itself import it

and no import circle between the modules of `course`. It reads the source with `ast` instead of importing it, so it
costs nothing and cannot be fooled by a lazy import: every import statement counts, at module level or inside a
function (a deferred import still ties the two modules together).

    python tools/layers.py          # exit 1 and one line per breach
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: package -> the first-party packages it may import (itself always)
ALLOWED = {
    "course": set(),
    "labs": {"course"},
    "solutions": {"course"},
    "checks": {"course"},
    "grading": {"course", "checks"},
    "bench": {"course", "solutions", "checks"},
    "tools": {"course", "checks", "grading", "solutions"},
    "tests": {"course", "labs", "solutions", "checks", "grading", "bench", "tools"},
}
FIRST_PARTY = set(ALLOWED)


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative imports resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def breaches() -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in imports(path):
                top = module.split(".")[0]
                if top in FIRST_PARTY and top != package and top not in allowed:
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {module} ({top} is above it)")
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] not in ("course", "labs", "solutions", "checks") or parts[:2] == ("course", "experiments"):
            continue
        for line, module in imports(path):
            if module == "course.experiments" or module.startswith("course.experiments."):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {module} is for notebooks and benchmarks only")
    problems += [f"import circle in course: {' -> '.join(cycle)}" for cycle in course_cycles()]
    return sorted(set(problems))


def course_cycles() -> list[list[str]]:
    """Circles between course's modules, through any import statement."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "course").rglob("*.py")
    }
    graph = {
        name: {m for _, imported in imports(path) for m in _owners(imported, modules) if m != name}
        for name, path in modules.items()
    }
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def _owners(imported: str, modules: dict) -> list[str]:
    """The course module an imported name lives in (`course.web.errors.ErrorBody` -> `course.web.errors`)."""
    parts = imported.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return [".".join(parts[:i])]
    return []


def main() -> int:
    problems = breaches()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"layers: {', '.join(ALLOWED)} keep the contract (no course import circle)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
