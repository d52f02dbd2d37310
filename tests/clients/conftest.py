"""conftest.py: fixtures shared by the clients' pytest files (a model and a running mpcd)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))

from mpcd_harness import Mpcd, find_mpcd, make_model  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small random pendulum-sized model: 3 observations, 1 action in [-2, 2]."""
    if not find_mpcd():
        pytest.skip("mpcd is not built (set MPCD or build daemon/mpcd)")
    path = tmp_path_factory.mktemp("model") / "pendulum.safetensors"
    return make_model(path, obs_dim=3, action_dim=1,
                      extra=["--task", "pendulum-test", "--action-low=-2", "--action-high=2"])


@pytest.fixture(scope="module")
def daemon(model, tmp_path_factory):
    """One mpcd for the module; its log is printed when a test fails."""
    d = Mpcd(model, log_path=str(tmp_path_factory.mktemp("mpcd") / "mpcd.log"))
    d.start()
    yield d
    status = d.stop()
    sys.stdout.write(d.log_text())
    assert status == 0, "mpcd exited with status %s after SIGTERM" % status
