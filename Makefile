# Two commands: `make demo` and `make test`. Both create .venv with a Python >= 3.12 found on this
# machine (PATH first, then pyenv's versions folder) and pinned dependencies.
VENV      := .venv
PY        := $(VENV)/bin/python
VENV60    := .venv-django60
VENV52    := .venv-django52
PORT      ?= 8000
# Two pytest processes per run (pytest-xdist): the suite waits on worker subprocesses and
# databases much of the time, so two keep a 2-core machine busy. `make test XDIST=0` runs serially.
XDIST     ?= 2
PYTEST    := -m pytest -q -n $(XDIST)
# The heavy tests (fault and load: tests/conftest.py HEAVY) run alone after the rest, and only on
# Django 6.1; runs on Django 6.0 and 5.2 also leave out the browser tests (the demo, written for
# 6.1; the demo-script and tutorial tests skip themselves there, saying so).
LIGHT := -m "not heavy"
OTHER_DJANGO := $(LIGHT) --ignore=tests/browser
DATABASES := sqlite postgresql mysql

.PHONY: demo test check smoke bench-features test-sqlite test-postgresql test-mysql test-django60 test-django52 venv venvs bench clean

$(PY):
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	echo "creating $(VENV) with $$python"; \
	"$$python" -m venv $(VENV)

$(VENV)/.installed: $(PY) requirements/test.txt requirements/base.txt pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

# One virtualenv per other Django of the matrix, from requirements/django60.txt / django52.txt.
.venv-django%/.installed: requirements/django%.txt requirements/base.txt pyproject.toml
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	[ -x .venv-django$*/bin/python ] || "$$python" -m venv .venv-django$*
	.venv-django$*/bin/python -m pip install -q --disable-pip-version-check -r requirements/django$*.txt
	.venv-django$*/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venvs: venv $(VENV60)/.installed $(VENV52)/.installed

# The whole suite on every Django (6.1, 6.0, 5.2 LTS with the django-tasks backport) and every
# database (SQLite; PostgreSQL and MariaDB, each skipped, saying why, only when its server is
# unreachable and CI is not set), after lint and types (`make check`), then the built wheel in a
# fresh virtualenv (`make smoke`). MariaDB: mysqlclient on 6.1, PyMySQL on 6.0 and 5.2. ARGS go
# to every pytest run.
test: venvs check
	@start=$$(date +%s); failed=""; \
	run() { label=$$1; shift; echo "== $$label"; "$$@"; rc=$$?; \
	        [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || failed="$$failed\n  $$label (exit $$rc)"; }; \
	for db in $(DATABASES); do \
	    run "Django 6.1, $$db" env LOOM_TEST_DB=$$db $(PY) $(PYTEST) $(LIGHT) $(ARGS); \
	    run "Django 6.1, $$db: heavy tests, alone" env LOOM_TEST_DB=$$db $(PY) -m pytest -q -m heavy $(ARGS); \
	done; \
	for v in 60 52; do for db in $(DATABASES); do \
	    run "Django $$v, $$db" env LOOM_MYSQL_DRIVER=pymysql LOOM_TEST_DB=$$db .venv-django$$v/bin/python \
	        $(PYTEST) $(OTHER_DJANGO) $(ARGS); \
	done; done; \
	echo "== the whole matrix took $$(( $$(date +%s) - start )) s"; \
	if [ -n "$$failed" ]; then printf "== FAILED:$$failed\n"; exit 1; fi
	$(MAKE) --no-print-directory smoke

# Lint (ruff) and types (mypy: strict for the public modules and the integrations; pyproject.toml).
check: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

# The wheel, installed with every extra into a fresh virtualenv, runs a startproject site from
# outside the source tree (scripts/smoke_wheel.sh): on Django 6.1, and on 5.2 with the backport.
smoke: venv $(VENV52)/.installed
	sh scripts/smoke_wheel.sh $(PY)
	sh scripts/smoke_wheel.sh $(VENV52)/bin/python

test-sqlite test-postgresql test-mysql: venv
	LOOM_TEST_DB=$(subst test-,,$@) $(PY) $(PYTEST) $(ARGS)

# One Django of the matrix on one database: `make test-django52 DB=postgresql ARGS=tests/x.py`.
test-django60 test-django52: test-django%: .venv-django%/.installed
	LOOM_TEST_DB=$${DB:-sqlite} .venv-django$*/bin/python $(PYTEST) $(OTHER_DJANGO) $(ARGS)

demo: venv
	@PORT=$(PORT) sh scripts/demo.sh $(PY)

clean:
	rm -rf $(VENV) $(VENV60) $(VENV52) example/db.sqlite3*

# loom and its peers side by side on this machine (bench/README.md); not part of `make test`.
# About 20 minutes; `make bench ARGS=--quick` for small sizes. Results go to bench/results/.
bench:
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	[ -x bench/.venvs/runner/bin/python ] || "$$python" -m venv bench/.venvs/runner; \
	bench/.venvs/runner/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements/runner.txt
	bench/.venvs/runner/bin/python bench/run.py $(ARGS)
	$(MAKE) --no-print-directory bench-features

# What loom's own features cost, loom against itself (no peer offers them): flow control's claim
# (bench/flow.py), workflows' steps and hops (bench/workflow.py), the targets that need no peer
# (bench/targets.py: enqueue against a bare INSERT, pickup at 800/s through bulk enqueue, where an
# idle pickup's time goes, start-up against Django's own, drain with task events off) and where a
# no-op task's CPU time goes in the worker (bench/breakdown.py).
bench-features: venv
	for db in sqlite postgresql; do $(PY) bench/flow.py --db $$db && $(PY) bench/workflow.py --db $$db \
	    && $(PY) bench/targets.py --db $$db && $(PY) bench/breakdown.py --db $$db -n 10000 || exit 1; done
