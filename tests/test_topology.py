"""A cluster with nodes on other hosts cannot log to a store served on this machine's 127.0.0.1: refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.topology import is_this_host, refuse_remote_nodes_with_local_store, remote_nodes
from orchestrator.tracking import TrackingTarget

# TEST-NET-1 (RFC 5737): never an address of this machine.
ELSEWHERE = "192.0.2.7"


def test_this_host_is_told_from_others() -> None:
    assert is_this_host("127.0.0.1")
    assert not is_this_host(ELSEWHERE)
    assert remote_nodes(["127.0.0.1", ELSEWHERE, "127.0.0.1"]) == [ELSEWHERE]


@pytest.mark.parametrize("uri", [None, "sqlite:///store/mlflow.db"])
def test_local_or_sqlite_store_with_remote_nodes_is_refused(uri: str | None) -> None:
    target = TrackingTarget(uri, Path(".sweeps"), "e")
    with pytest.raises(UserError) as error:
        refuse_remote_nodes_with_local_store(target, ["127.0.0.1", ELSEWHERE])
    message = str(error.value)
    assert ELSEWHERE in message and "give tracking.uri=http://HOST:PORT" in message and "\n" not in message


def test_nodes_on_this_host_or_a_server_store_are_allowed() -> None:
    refuse_remote_nodes_with_local_store(TrackingTarget(None, Path(".sweeps"), "e"), ["127.0.0.1"])
    refuse_remote_nodes_with_local_store(TrackingTarget("http://mlflow:5000", Path(".sweeps"), "e"), [ELSEWHERE])
