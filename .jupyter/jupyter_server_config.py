"""The course's own Jupyter configuration, read because `python -m course lab` (make lab) puts this folder on
JUPYTER_CONFIG_PATH. Nothing in the learner's home directory is read or written for these settings."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
c = get_config()  # noqa: F821 — provided by Jupyter when it loads this file

# The file browser shows the course (notebooks/, labs/, checks/, …), not the machinery: dot-folders such as .venv/
# and .pgdata/ are hidden by Jupyter already; the built corpus, caches and grading output are hidden here.
c.ContentsManager.hide_globs = ["__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".DS_Store", "*~",
                                "data", "submissions", "scores.json", "scores.csv", "junit"]
# No first-run prompts and no calls to the internet: news and update checks are off.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
# Settings and the objective layouts (written by `python -m course lab`) live in this folder, not in ~/.jupyter.
c.LabApp.user_settings_dir = str(HERE / "lab" / "user-settings")
c.LabApp.workspaces_dir = str(HERE / "lab" / "workspaces")
