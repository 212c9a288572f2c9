"""A real multi-node Ray cluster (`ray start` head + two worker nodes, token auth) in a private network namespace.

Several Ray nodes on one machine all bind 127.0.0.1; outside a namespace Ray would have to listen on every interface.
`unshare -n` gives the suite in ``tests/multinode/`` a loopback of its own, where the cluster, the MLflow servers and
the `sweep` commands live together; this test runs that suite there and fails with its output when any test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracking_servers import NETNS_ENV

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
# Every node and client in the namespace shares one token, as an operator's cluster does.
CLUSTER_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}


def test_multinode_suite_in_a_private_network_namespace() -> None:
    assert os.geteuid() == 0 and shutil.which("unshare"), "needs root and unshare (tests and CI run as root)"
    command = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider -rA {TESTS / 'multinode'}"
    result = subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=TESTS.parent, capture_output=True, text=True,
                            env={**os.environ, NETNS_ENV: "1", **CLUSTER_ENV}, timeout=1500)
    print(result.stdout[-20000:], result.stderr[-5000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
