"""``loom resume QUEUE...``: workers claim tasks of these paused queues again."""

from __future__ import annotations

from loom.cli import pause

help = "Resume paused queues."
add_arguments = pause.add_arguments


def run(command, options) -> None:
    pause.run(command, options, paused=False)
