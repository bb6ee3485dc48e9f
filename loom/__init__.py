"""django-loom: durable background work and in-request concurrency for Django.

The public API is deliberately small. Users write plain ``@django.tasks.task`` functions and
point ``TASKS`` at ``loom.backends.DatabaseBackend``; everything else lives in submodules.
"""

__version__ = "0.1.0"
