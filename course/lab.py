"""`make lab` (`python -m course lab --objective N`): JupyterLab on the repository root, opened on one objective.

The learner sees `notebooks/0N_….ipynb` with `labs/objectiveN.py` in an editor beside it, and a file browser with
the course folders. Everything JupyterLab needs for that is the course's own configuration (`.jupyter/`, put on
JUPYTER_CONFIG_PATH here): the hidden folders, no news/update prompts, and one saved layout ("workspace") per
objective, written by this module just before the server starts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / ".jupyter"
WORKSPACES_DIR = CONFIG_DIR / "lab" / "workspaces"


def notebook_for(objective: int, root: Path = ROOT) -> str:
    """The notebook of an objective, relative to root, e.g. 'notebooks/01_setup.ipynb'."""
    found = sorted((root / "notebooks").glob(f"{objective:02d}_*.ipynb"))
    if not found:
        raise SystemExit(f"There is no notebook for objective {objective} in {root / 'notebooks'}.")
    return found[0].relative_to(root).as_posix()


def lab_files_for(objective: int, root: Path = ROOT) -> list[str]:
    """The files the learner edits: labs/objectiveN.py, or every module of a package objective labs/objectiveN/
    (its __init__.py re-exports them) in the order its notebook builds them: the module the package imports first."""
    single = root / f"labs/objective{objective}.py"
    if single.is_file():
        return [single.relative_to(root).as_posix()]
    package = root / f"labs/objective{objective}"
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"There is no labs/objective{objective}.py (or package) in {root}.")
    init = (package / "__init__.py").read_text(encoding="utf-8")
    modules = sorted(p for p in package.glob("*.py") if p.name != "__init__.py")

    def imported_at(module: Path) -> int:
        found = init.find(f".{module.stem} import")
        return found if found >= 0 else len(init)  # a module __init__.py does not import goes last

    return [p.relative_to(root).as_posix() for p in sorted(modules, key=lambda p: (imported_at(p), p.name))]


def lab_file_for(objective: int, root: Path = ROOT) -> str:
    """The first file the learner edits for an objective (see lab_files_for)."""
    return lab_files_for(objective, root)[0]


def workspace(objective: int, root: Path = ROOT) -> dict:
    """A JupyterLab 4 workspace: the notebook and the lab file(s) side by side (50/50; a package objective's modules
    as tabs), the file browser open at the repository root. This is the document JupyterLab itself saves under
    /lab/api/workspaces/<name>."""
    notebook, lab_files = notebook_for(objective, root), lab_files_for(objective, root)
    nb_id, editor_ids = f"notebook:{notebook}", [f"editor:{f}" for f in lab_files]
    return {
        "data": {
            "layout-restorer:data": {
                "main": {
                    "dock": {
                        "type": "split-area",
                        "orientation": "horizontal",
                        "sizes": [0.5, 0.5],
                        "children": [
                            {"type": "tab-area", "currentIndex": 0, "widgets": [nb_id]},
                            {"type": "tab-area", "currentIndex": 0, "widgets": editor_ids},
                        ],
                    },
                    "current": nb_id,
                },
                "left": {
                    "collapsed": False,
                    "visible": True,
                    "current": "filebrowser",
                    "widgets": ["filebrowser", "running-sessions", "table-of-contents", "extensionmanager.main-view"],
                },
                "right": {"collapsed": True, "visible": True, "widgets": ["jp-property-inspector", "debugger-sidebar"]},
                "relativeSizes": [0.16, 0.84, 0],
                "top": {"simpleVisibility": True},
            },
            nb_id: {"data": {"path": notebook, "factory": "Notebook"}},
            **{e: {"data": {"path": f, "factory": "Editor"}} for e, f in zip(editor_ids, lab_files)},
            "file-browser-filebrowser:cwd": {"path": ""},
        },
        "metadata": {"id": f"objective{objective}"},
    }


def write_workspace(objective: int, root: Path = ROOT, directory: Path = WORKSPACES_DIR) -> Path:
    """Write (or reset) the objective's layout where JupyterLab looks for workspaces."""
    from jupyterlab_server.workspaces_handler import WORKSPACE_EXTENSION, slugify

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (slugify(f"objective{objective}") + WORKSPACE_EXTENSION)  # the file name JupyterLab looks for
    path.write_text(json.dumps(workspace(objective, root), indent=2), encoding="utf-8")
    return path


def lab_command(objective: int, root: Path = ROOT, extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The `jupyter lab` command line and environment that `make lab` runs."""
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (str(CONFIG_DIR), env.get("JUPYTER_CONFIG_PATH")) if p)
    args = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={root}",
        # LabApp's own default_url (/lab) overrides ServerApp's under `jupyter lab`: this one decides what `/`, the
        # URL the server prints and the browser-open file land on
        f"--LabApp.default_url=/lab/workspaces/objective{objective}",
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        args.append("--allow-root")  # containers and Codespaces run as root
    return args + list(extra or []), env


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", "-o", type=int, default=1, help="the objective to open (default 1)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # tests serve a scratch copy
    parser.add_argument("--workspaces-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    root = args.root.resolve()
    write_workspace(args.objective, root, args.workspaces_dir or WORKSPACES_DIR)
    if args.workspaces_dir:
        extra.append(f"--LabApp.workspaces_dir={args.workspaces_dir.resolve()}")
    command, env = lab_command(args.objective, root, extra)
    print(
        f"Opening objective {args.objective}: {notebook_for(args.objective, root)} beside "
        f"{', '.join(lab_files_for(args.objective, root))}",
        flush=True,
    )
    os.execve(command[0], command, env)
    return 0  # not reached
