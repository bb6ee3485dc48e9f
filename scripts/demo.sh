#!/bin/sh
# Run the demo: migrate example/db.sqlite3, create the demo staff user, start the site and a
# worker, print the URL; Ctrl-C or SIGTERM stops both. Usage: sh scripts/demo.sh PYTHON
# (the Makefile passes .venv/bin/python). PORT picks the port (default 8000).
set -eu

py=${1:?usage: sh scripts/demo.sh /path/to/python}
port=${PORT:-8000}
case $py in
    */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;;  # absolute, before we cd
esac
cd "$(dirname "$0")/../example"

"$py" manage.py migrate --noinput -v 0
"$py" manage.py demo_user

web= worker=
stop() {
    trap - INT TERM EXIT
    [ -n "$web" ] && kill -TERM "$web" 2>/dev/null
    # SIGTERM lets running tasks finish (up to --grace seconds); a second one would not wait.
    [ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null
    wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"$py" manage.py runserver "127.0.0.1:$port" --noreload &
web=$!
"$py" manage.py loom worker --threads 4 --grace 5 &
worker=$!

echo "loom demo: http://127.0.0.1:$port/   dashboard: http://127.0.0.1:$port/loom/   (Ctrl-C stops)"

# Background jobs of a script ignore SIGINT, so the trap above stops them; poll so that the
# trap runs at once and so that one process dying (say, the port is taken) stops the other.
while kill -0 "$web" 2>/dev/null && kill -0 "$worker" 2>/dev/null; do
    sleep 1 &
    wait $! || true
done
echo "loom demo: a process exited; stopping" >&2
exit 1
