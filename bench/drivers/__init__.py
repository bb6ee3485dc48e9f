"""One module per tool; run one with ``python -m drivers TOOL`` (see base.py)."""
