#!/bin/sh
# The demo with Django Channels (docs/channels.md): uvicorn serving HTTP and WebSockets, Channels'
# runworker for loom's TaskConsumer, and a loom worker, all on demo_site.settings_channels. Needs
# Redis at 127.0.0.1:6379 (LOOM_DEMO_REDIS moves it). Usage: sh scripts/demo_channels.sh PYTHON
# (e.g. .venv/bin/python); PORT picks the port (default 8000). Ctrl-C stops all three.
set -eu

py=${1:?usage: sh scripts/demo_channels.sh /path/to/python}
port=${PORT:-8000}
case $py in
    */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;;
esac
cd "$(dirname "$0")/../example"
export DJANGO_SETTINGS_MODULE=demo_site.settings_channels

"$py" manage.py migrate --noinput -v 0
"$py" manage.py demo_user

pids=
stop() {
    trap - INT TERM EXIT
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"$py" -m uvicorn demo_site.asgi_channels:application --host 127.0.0.1 --port "$port" &
pids="$pids $!"
"$py" manage.py runworker loom-tasks &
pids="$pids $!"
"$py" manage.py loom worker --threads 4 --grace 5 &
pids="$pids $!"

echo "loom Channels demo: http://127.0.0.1:$port/channels/   (Ctrl-C stops)"
while :; do
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null || { echo "loom Channels demo: a process exited; stopping" >&2; exit 1; }
    done
    sleep 1 &
    wait $! || true
done
