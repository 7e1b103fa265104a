"""Copied work, flagged for a person to look at (never a penalty): graded functions that are essentially the same
code as the reference or as another submission, whatever the names, formatting, comments, docstrings — or a few
statements added to hide the copy.

Each graded function (one that holds a `BEGIN SOLUTION` region in solutions/) is reduced to its AST with docstrings
and annotations dropped and every local name (arguments, variables, loop and comprehension targets) replaced by the
same placeholder, so renaming variables, reusing a name or reformatting does not hide a copy. That tree, walked in
order, is a token stream; its K-token windows are hashed and winnowed (the fingerprinting MOSS uses: the smallest
hash of every WINDOW consecutive ones), and the fingerprints the starter's version of the function already has
(given code everyone shares) are set aside. Two functions are flagged when at least SIMILAR of the smaller one's
fingerprints are in the other: a no-op statement per function changes only the few windows that cross it. A
function is compared only if the learner wrote at least MIN_NODES AST nodes of it beyond the starter's: short
answers converge honestly (there are few ways to write `return table.get(key, default)`), and an untouched starter
is not work.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_NODES = 40
K = 8  # tokens per hashed window
WINDOW = 4  # winnowing window: one fingerprint per WINDOW consecutive hashes at least
SIMILAR = 0.8  # share of the smaller function's fingerprints found in the other
BEGIN = re.compile(r"^\s*# BEGIN SOLUTION")


class _Canonical(ast.NodeTransformer):
    """Replace local names by one placeholder; drop docstrings and annotations."""

    def __init__(self, local: set[str]):
        self.local = local

    def _name(self, name: str) -> str:
        return "_" if name in self.local else name  # globals, imports, attributes: part of what the code does

    def visit_Name(self, node: ast.Name):
        return ast.copy_location(ast.Name(id=self._name(node.id), ctx=node.ctx), node)

    def visit_arg(self, node: ast.arg):
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def generic_visit(self, node):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return super().generic_visit(node)


def _locals(function: ast.AST) -> set[str]:
    names = {a.arg for a in ast.walk(function) if isinstance(a, ast.arg)}
    names |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _canonical(function: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
    body = ast.Module(body=function.body, type_ignores=[])
    return _Canonical(_locals(function)).visit(ast.parse(ast.unparse(body)))


def _tokens(tree: ast.AST) -> list[str]:
    """The tree in walk order: each node's type, with the names, attributes and constants it carries."""
    tokens = []
    for node in ast.walk(tree):
        tokens.append(type(node).__name__)
        for field in ("id", "attr", "arg", "name"):
            value = getattr(node, field, None)
            if isinstance(value, str):
                tokens.append(value)
        if isinstance(node, ast.Constant):
            tokens.append(repr(node.value)[:40])
    return tokens


def fingerprint(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[frozenset[int], int]:
    """The function's winnowed fingerprints (hashes of K-token windows of its normalised code), and its size in AST
    nodes."""
    tree = _canonical(function)
    tokens = _tokens(tree)
    hashes = [
        int.from_bytes(hashlib.blake2b("\x1f".join(tokens[i : i + K]).encode(), digest_size=8).digest(), "big")
        for i in range(max(1, len(tokens) - K + 1))
    ]
    chosen = {min(hashes[i : i + WINDOW]) for i in range(max(1, len(hashes) - WINDOW + 1))}
    return frozenset(chosen), sum(1 for _ in ast.walk(tree))


def resemblance(a: frozenset[int], b: frozenset[int]) -> float:
    """The share of the smaller set's fingerprints that are in the other (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def _functions(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method of a file by qualified name (Class.method)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[prefix + child.name] = child
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(tree)
    return found


def graded_functions(solutions: Path = ROOT / "solutions") -> dict[str, set[str]]:
    """{file relative to solutions/: names of the functions that hold a solution region}."""
    graded: dict[str, set[str]] = {}
    for path in sorted(solutions.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = [i + 1 for i, line in enumerate(lines) if BEGIN.match(line)]
        if not starts:
            continue
        for name, function in _functions(path).items():
            if any(function.lineno <= line <= (function.end_lineno or 0) for line in starts):
                graded.setdefault(path.relative_to(solutions).as_posix(), set()).add(name)
    return graded


def fingerprints(
    code_root: Path, graded: dict[str, set[str]], starter: dict[str, tuple[frozenset[int], int]] | None = None
) -> dict[str, tuple[frozenset[int], int]]:
    """{"objective1.py:validate_embedding": (fingerprints, size)} for the graded functions under code_root; with the
    starter's own, only functions that add at least MIN_NODES nodes to it, and without the starter's fingerprints."""
    prints = {}
    for relative, names in graded.items():
        path = code_root / relative
        if not path.is_file():
            continue
        try:
            functions = _functions(path)
        except (SyntaxError, ValueError):
            continue
        for name in sorted(names & set(functions)):
            key, (value, size) = f"{relative}:{name}", fingerprint(functions[name])
            base_value, base_size = (starter or {}).get(key, (frozenset(), 0))
            if size - base_size >= MIN_NODES and (value - base_value):
                prints[key] = (value - base_value, size)
    return prints


def flag_copies(
    submissions: dict[str, Path], solutions: Path | None = ROOT / "solutions", starter: Path | None = ROOT / "labs"
) -> dict[str, list[dict]]:
    """{submission: [{"function", "same_as"}]} — graded functions identical (as fingerprints) to the reference
    (`same_as` "reference") or to other submissions (their names). Submissions are labs/ folders; `starter` is
    the untouched labs/ (generated from solutions/ in the course repository)."""
    if solutions is None or not solutions.is_dir():
        return {name: [] for name in submissions}
    graded = graded_functions(solutions)
    base = {
        key: fingerprint(fn)
        for relative, names in graded.items()
        if starter is not None and (starter / relative).is_file()
        for name, fn in _functions(starter / relative).items()
        if name in names
        for key in [f"{relative}:{name}"]
    }
    reference = fingerprints(solutions, graded, base)
    prints = {name: fingerprints(labs, graded, base) for name, labs in submissions.items()}
    flags: dict[str, list[dict]] = {name: [] for name in submissions}
    for name, found in prints.items():
        for function, (value, _) in sorted(found.items()):
            same = sorted(
                other
                for other, theirs in prints.items()
                if other != name and function in theirs and resemblance(value, theirs[function][0]) >= SIMILAR
            )
            if function in reference and resemblance(value, reference[function][0]) >= SIMILAR:
                flags[name].append({"function": function, "same_as": ["reference", *same]})
            elif same:
                flags[name].append({"function": function, "same_as": same})
    return flags
