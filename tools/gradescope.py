"""The Gradescope autograder: `python tools/gradescope.py autograder.zip [--hidden DIR]` (or `make gradescope`).

Gradescope builds an image from the zip (its `setup.sh` runs once, as root, with network) and, for every upload, runs
`run_autograder`, which must write `/autograder/results/results.json`. The zip holds:

* `source/`: the student release (tools/release.py: no solutions/, proven clean), plus the instructor's hidden checks
  under `source/hidden/` when --hidden is given — they ship to Gradescope, never to students;
* `setup.sh`: installs a Python 3.11 and exactly `requirements.lock` (uv, which fetches a managed Python when the
  image has none), the course itself, and bubblewrap for the grader's sandbox;
* `run_autograder`: `python -m grading` on the upload (a `labs/` folder, a whole repository, or loose
  `objective*.py` files — Gradescope puts them in /autograder/submission) with `--format gradescope`, and
  `--objectives` when the assignment covers only some (`--objectives 1,3` here).

`AUTOGRADER_ROOT` (default /autograder) lets a test run `run_autograder` in a simulated tree.
"""

from __future__ import annotations

import argparse
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import release  # noqa: E402 (tools/ is not a package)

SETUP = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq bubblewrap curl ca-certificates >/dev/null
curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=/usr/local/bin sh
uv venv --python 3.11 .venv
uv pip install --python .venv/bin/python -r requirements.lock
uv pip install --python .venv/bin/python --no-deps -e .
"""

RUN = """\
#!/usr/bin/env bash
# Gradescope runs this for every upload; it must leave results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source"
hidden=()
if [ -d hidden ]; then hidden=(--hidden hidden); fi
.venv/bin/python -m grading "$ROOT/submission" --format gradescope --out "$ROOT/results/results.json" \
  "${hidden[@]}" {objectives}
"""


def build(zip_path: Path, hidden: Path | None = None, objectives: str | None = None) -> Path:
    """Write the autograder zip; returns its path. `objectives` ("1" or "1,3"): an assignment that grades only those."""
    if objectives is not None and not re.fullmatch(r"\d+(,\d+)*", objectives):
        raise SystemExit(f"--objectives takes numbers separated by commas, not {objectives!r}")
    with tempfile.TemporaryDirectory() as tmp:
        source = release.build(Path(tmp) / "source", force=True)
        if hidden is not None:
            files = sorted(hidden.glob("test_objective*.py"))
            if not files:
                raise SystemExit(f"{hidden} has no test_objective<N>_*.py files")
            (source / "hidden").mkdir()
            for file in files:
                shutil.copy(file, source / "hidden" / file.name)
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            run = RUN.replace("{objectives}", f"--objectives {objectives}" if objectives else "")
            for name, text in (("setup.sh", SETUP), ("run_autograder", run)):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFREG | 0o755) << 16
                archive.writestr(info, text)
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    archive.write(path, Path("source") / path.relative_to(source))
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/gradescope.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path, help="where to write the autograder, e.g. autograder.zip")
    parser.add_argument("--hidden", type=Path, help="a folder of instructor-only checks (test_objective<N>_*.py)")
    parser.add_argument("--objectives", help="an assignment of some objectives only, e.g. 1 or 1,3 (default: all)")
    args = parser.parse_args(argv)
    path = build(args.zip, args.hidden, args.objectives)
    print(f"{path}: upload it as the assignment's autograder on Gradescope ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
