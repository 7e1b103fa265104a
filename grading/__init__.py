"""The class grader: every submission's checks in a process (and a database server) of its own, scored, flagged for
copies, and written as JSON, CSV, JUnit, Gradescope or GitHub Classroom results (`python -m grading`, `make grade`).
The checks themselves, and the learner's `python -m checks`, are in checks/."""
