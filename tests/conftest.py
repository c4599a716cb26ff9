import pytest

from .helpers import Proc


@pytest.fixture
def short_tmp(tmp_path_factory):
    """A short directory path: unix socket paths must fit in 108 bytes."""
    import tempfile
    import shutil
    d = tempfile.mkdtemp(prefix="sg-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def proc():
    """Start styxgrid processes; every one is stopped at the end of the test."""
    started: list[Proc] = []

    def start(args, ready, env=None) -> Proc:
        p = Proc(args, ready, env)
        started.append(p)
        return p
    yield start
    for p in reversed(started):
        p.stop()
