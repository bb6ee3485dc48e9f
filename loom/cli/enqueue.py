"""``loom enqueue dotted.path --args JSON --kwargs JSON``: enqueue a task from the shell; prints its id.

Exit codes: 0 enqueued; 1 bad input (the path is not a Task, the JSON is not a list/object, the
arguments cannot be stored, unknown backend or queue).
"""

from __future__ import annotations

import json

from django.core.management.base import CommandError

help = "Enqueue a task by dotted path with JSON arguments; prints the task id."


def add_arguments(parser) -> None:
    parser.add_argument("path", help="Dotted path of a @task function, e.g. myapp.tasks.send_report.")
    parser.add_argument("--args", dest="json_args", default="[]", metavar="JSON", help='Positional arguments as a JSON list, e.g. \'[1, "a"]\'.')
    parser.add_argument("--kwargs", dest="json_kwargs", default="{}", metavar="JSON", help='Keyword arguments as a JSON object.')
    parser.add_argument("--queue", help="Queue name (default: the task's own).")
    parser.add_argument("--priority", type=int, help="Priority -100..100 (default: the task's own).")
    parser.add_argument("--backend", help="TASKS alias (default: the task's own).")


def _json(option: str, text: str, kind: type):
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--{option} is not valid JSON ({exc}); quote it for the shell, e.g. --{option} "
                           + ("'[1, 2]'." if kind is list else "'{\"name\": \"x\"}'.")) from None
    if not isinstance(value, kind):
        raise CommandError(f"--{option} must be a JSON {'list' if kind is list else 'object'}, got {type(value).__name__}.")
    return value


def run(command, options) -> None:
    from django.utils.module_loading import import_string

    from loom.compat import InvalidTask, InvalidTaskBackend, Task

    # Stored under other names: BaseCommand takes options["args"] for its positional arguments.
    args = _json("args", options["json_args"], list)
    kwargs = _json("kwargs", options["json_kwargs"], dict)
    try:
        task = import_string(options["path"])
    except ImportError as exc:
        raise CommandError(f"Cannot import {options['path']!r}: {exc}") from None
    if not isinstance(task, Task):
        raise CommandError(f"{options['path']!r} is a {type(task).__name__}, not a task; decorate it with @task.")
    changes = {k: v for k, v in (("queue_name", options["queue"]), ("priority", options["priority"]),
                                 ("backend", options["backend"])) if v is not None}
    try:
        result = (task.using(**changes) if changes else task).enqueue(*args, **kwargs)
    except (InvalidTask, InvalidTaskBackend, TypeError, ValueError) as exc:
        raise CommandError(f"Cannot enqueue {options['path']}: {exc}") from None
    command.stdout.write(result.id)
