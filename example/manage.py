#!/usr/bin/env python
"""The demo project's manage.py: ``python manage.py runserver`` and ``python manage.py loom worker``.

loom is imported from this checkout (the folder above), so the demo runs without installing it.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
