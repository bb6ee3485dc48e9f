#!/bin/sh
# Build the wheel, install it with every extra into a fresh virtualenv, and run a user's project
# from a folder outside the source tree (CI runs it through `make smoke`). Versions are pinned to
# what PYTHON's environment has (pip freeze, its Django included), so the install comes from
# pip's cache when it can; with a Django 5.2 environment it adds the backport extra.
# Usage: sh scripts/smoke_wheel.sh PYTHON
set -eu
py=${1:?usage: sh scripts/smoke_wheel.sh /path/to/python}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-smoke-XXXXXX")
trap 'rm -rf "$work"' EXIT

"$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/django_loom-*.whl)
"$py" -m pip freeze --exclude-editable --disable-pip-version-check | grep -v -i '^django-loom' > "$work/constraints.txt"
"$py" -m venv "$work/venv"
extras=postgresql,mysql,pymysql,redis,prometheus,channels,otel
# Django 5.2 (PYTHON's Django): the Tasks API comes from the backport extra.
"$py" -c 'import django, sys; sys.exit(django.VERSION >= (6, 0))' && extras="backport,$extras"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check -c "$work/constraints.txt" "$wheel[$extras]"
cp "$root/scripts/smoke_wheel.py" "$work/smoke.py"
cd "$work"
env -u PYTHONPATH -u DJANGO_SETTINGS_MODULE "$work/venv/bin/python" smoke.py "$wheel"
