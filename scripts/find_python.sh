#!/bin/sh
# Print the path of a Python >= 3.12 (Django 6 needs it): first from PATH, then from pyenv's
# versions folder. pyenv shims are on PATH but fail for versions that are not selected, so every
# candidate is actually run before it is accepted.
ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
for name in python3.14 python3.13 python3.12 python3 python; do
    path=$(command -v "$name" 2>/dev/null) || continue
    if ok "$path"; then echo "$path"; exit 0; fi
done
root=${PYENV_ROOT:-}
[ -n "$root" ] || root=$(pyenv root 2>/dev/null) || root=
[ -n "$root" ] || root="$HOME/.pyenv"
for path in $(ls -d "$root"/versions/3.*/bin/python 2>/dev/null | sort -t. -k2,2nr -k3,3nr); do
    if ok "$path"; then echo "$path"; exit 0; fi
done
echo "error: django-loom needs Python >= 3.12 (Django 6 requires it) and none was found on PATH" >&2
echo "       or in pyenv's versions folder ($root/versions). Install one, e.g. 'pyenv install 3.13'," >&2
echo "       or run: make PYTHON=/path/to/python3.12 ..." >&2
exit 1
