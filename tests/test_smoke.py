import pytest
from tests.app import tasks


@pytest.mark.django_db(transaction=True)
def test_enqueue_and_burst():
    from loom.worker import Worker
    r = tasks.add.enqueue(2, 3)
    a = tasks.async_add.enqueue(4, 5)
    f = tasks.fail.enqueue()
    Worker(burst=True).run()
    r.refresh(); a.refresh(); f.refresh()
    assert r.status == "SUCCESSFUL" and r.return_value == 5
    assert a.status == "SUCCESSFUL" and a.return_value == 9
    assert f.status == "FAILED", f.errors
    assert f.errors[0].exception_class_path == "builtins.ValueError"
