# Two commands: `make demo` and `make test`. Both create .venv with a Python >= 3.12 found on this
# machine (PATH first, then pyenv's versions folder) and pinned dependencies.
VENV      := .venv
PY        := $(VENV)/bin/python
VENV60    := .venv-django60
PORT      ?= 8000
PYTEST    := $(PY) -m pytest -q

.PHONY: demo test test-sqlite test-postgresql test-mysql test-django60 venv bench clean

$(PY):
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	echo "creating $(VENV) with $$python"; \
	"$$python" -m venv $(VENV)

$(VENV)/.installed: $(PY) requirements/test.txt pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

$(VENV60)/.installed: requirements/django60.txt pyproject.toml
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	[ -x $(VENV60)/bin/python ] || "$$python" -m venv $(VENV60)
	$(VENV60)/bin/python -m pip install -q --disable-pip-version-check -r requirements/django60.txt
	$(VENV60)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# The whole suite on SQLite, then on PostgreSQL and MariaDB (each skips, saying why, only when its
# server is unreachable and CI is not set), then the backend contract on Django 6.0.
test: venv $(VENV60)/.installed
	LOOM_TEST_DB=sqlite $(PYTEST)
	LOOM_TEST_DB=postgresql $(PYTEST)
	LOOM_TEST_DB=mysql $(PYTEST)
	LOOM_TEST_DB=sqlite $(VENV60)/bin/python -m pytest -q -m contract tests/test_backend.py

test-sqlite test-postgresql test-mysql: venv
	LOOM_TEST_DB=$(subst test-,,$@) $(PYTEST) $(ARGS)

demo: venv
	@PORT=$(PORT) sh scripts/demo.sh $(PY)

clean:
	rm -rf $(VENV) $(VENV60) example/db.sqlite3*

# loom and its peers side by side on this machine (bench/README.md); not part of `make test`.
# About 20 minutes; `make bench ARGS=--quick` for small sizes. Results go to bench/results/.
bench:
	@python=$${PYTHON:-$$(sh scripts/find_python.sh)} || exit 1; \
	[ -x bench/.venvs/runner/bin/python ] || "$$python" -m venv bench/.venvs/runner; \
	bench/.venvs/runner/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements/runner.txt
	bench/.venvs/runner/bin/python bench/run.py $(ARGS)
