#!/bin/sh
# Run the demo: migrate example/db.sqlite3, create the demo staff user, start the site and a
# worker, and print the URL once the site answers; Ctrl-C or SIGTERM stops both. If either one
# exits on its own (say, the port is taken), the other is stopped too, the reason is printed
# and the script exits non-zero: it never leaves a worker running behind it.
# Usage: sh scripts/demo.sh PYTHON (the Makefile passes .venv/bin/python). PORT picks the port
# (default 8000); LOOM_DEMO_DB moves the database file.
set -eu

py=${1:?usage: sh scripts/demo.sh /path/to/python}
port=${PORT:-8000}
# Seconds the site gets to answer its first request.
deadline=60
case $py in
    */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;;  # absolute, before we cd
esac
cd "$(dirname "$0")/../example"

"$py" manage.py migrate --noinput -v 0
"$py" manage.py demo_user

# A port another program holds would be answered by that program: refuse it before starting.
"$py" -c "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null || {
    echo "loom demo: port $port is taken by another program; pick another: PORT=8001 make demo" >&2
    exit 1
}

web= worker=
stop() {
    trap - INT TERM EXIT
    # "|| true": under set -e a failed kill (that process is already gone) would end the script
    # here, before the other process is stopped.
    [ -z "$web" ] || kill -TERM "$web" 2>/dev/null || true
    # SIGTERM lets running tasks finish (up to --grace seconds); a second one would not wait.
    [ -z "$worker" ] || kill -TERM "$worker" 2>/dev/null || true
    wait 2>/dev/null || true
}
fail() {
    echo "loom demo: $1; stopping" >&2
    stop
    exit 1
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"$py" manage.py runserver "127.0.0.1:$port" --noreload &
web=$!
"$py" manage.py loom worker --threads 4 --grace 5 &
worker=$!

# One Python process asks the site until it answers (any HTTP response counts), the server
# process is gone, or the deadline passes: exit status 0, 3 or 4.
answered=0
"$py" - "$port" "$web" "$deadline" <<'EOF' || answered=$?
import os, sys, time, urllib.error, urllib.request
port, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(3)
    if time.monotonic() > deadline:
        sys.exit(4)
    time.sleep(0.1)
EOF
case $answered in
    0) ;;
    3) fail "the web server exited before it answered (is port $port taken? try: PORT=8001 make demo)" ;;
    *) fail "the web server did not answer on port $port within ${deadline}s" ;;
esac
kill -0 "$worker" 2>/dev/null || fail "the worker exited while the site started (see its error above)"

echo "loom demo: http://127.0.0.1:$port/   dashboard: http://127.0.0.1:$port/loom/ (user demo, password demo-loom)   Ctrl-C stops"

# Background jobs of a script ignore SIGINT, so the trap above stops them; poll so that the
# trap runs at once and so that one process dying stops the other.
while :; do
    kill -0 "$web" 2>/dev/null || fail "the web server exited"
    kill -0 "$worker" 2>/dev/null || fail "the worker exited (see its error above)"
    sleep 1 &
    wait $! || true
done
