from django.db import models


class Run(models.Model):
    """One row per execution of a test task: how tests see what ran, and how often."""

    key = models.CharField(max_length=100)
    worker_pid = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)


class Note(models.Model):
    """User data written beside an enqueue, to prove the two commit or roll back together."""

    text = models.CharField(max_length=100)
