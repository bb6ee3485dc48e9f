"""``python -m drivers TOOL [options]``: run one tool's driver (see drivers/base.py)."""

from drivers.base import main

main()
