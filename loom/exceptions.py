"""Exceptions loom raises; one class, one sentence each."""


from loom.compat import InvalidTask


class InvalidTaskArguments(InvalidTask, TypeError):
    """Arguments of an enqueue cannot be stored as JSON (also a TypeError, as Django raises)."""


class TaskImportError(InvalidTask):
    """A stored task path no longer imports, or imports something that is not a Task."""


class TaskArgumentsMismatch(TypeError):
    """Stored arguments no longer fit the signature of the task function."""


class TimeLimitExceeded(Exception):
    """A run went past its time limit and was interrupted (retried like any other error)."""


class TaskCancelled(BaseException):
    """A run was cancelled by an operator; a BaseException so ``except Exception`` cannot swallow it."""


class LeaseLost(BaseException):
    """This worker no longer holds the task's claim: it could not renew the lease (cut off from
    the database past the lease) or the task was rescued and given to another worker. The run is
    stopped and its outcome is not written; a BaseException so ``except Exception`` cannot
    swallow it."""


class WorkerLost(Exception):
    """The process running the task died (killed, crashed, or stopped beating) mid-run."""


class OutcomeNotStored(Exception):
    """A run ended but the database refused to store what it produced; the task fails alone."""
