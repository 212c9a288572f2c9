"""One vocabulary: run statuses and run tag names are spelled in ``workers/vocabulary.py`` and nowhere else in the
package, so a writer in one plane and its readers in the other cannot drift apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from workers.vocabulary import TERMINAL, RunStatus, TrialState

PACKAGE = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for folder in ("orchestrator", "workers") for p in (PACKAGE / folder).rglob("*.py")
                 if p.name != "vocabulary.py")
STATUSES = {status.value for status in RunStatus}


def _spelled_tags(tree: ast.AST) -> list[tuple[int, str]]:
    """Literal tag names where a tag is written or read: RunTag("x", ...), tags.get("x"), tags["x"], set_tag(r, "x")."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            owner = node.func.value if isinstance(node.func, ast.Attribute) else None
            position = {"RunTag": 0, "set_tag": 1, "delete_tag": 1}.get(name)
            if name == "get" and owner is not None and ast.unparse(owner).endswith("tags"):
                position = 0
            if position is not None and len(node.args) > position:
                argument = node.args[position]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.append((node.lineno, argument.value))
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("tags"):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                found.append((node.lineno, node.slice.value))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_spells_a_status_or_a_tag(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    statuses = [(node.lineno, node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and node.value in STATUSES and id(node) not in docstrings]
    assert not statuses, f"{path.name}: use workers.vocabulary.RunStatus, not {statuses}"
    tags = _spelled_tags(tree)
    assert not tags, f"{path.name}: use the tag constants of workers.vocabulary, not {tags}"


def test_the_check_finds_what_it_looks_for() -> None:
    """The scan above is only worth something if it sees a spelled tag and status."""
    tree = ast.parse('RunTag("epoch", "1")\nrun.data.tags.get("trial_id")\nrun.data.tags["kind"]\n'
                     'client.set_tag(run_id, "heartbeat", "1")\n')
    assert [tag for _, tag in _spelled_tags(tree)] == ["epoch", "trial_id", "kind", "heartbeat"]


def test_members_are_the_strings_mlflow_stores_and_status_shows() -> None:
    assert RunStatus.FINISHED == "FINISHED" and f"{RunStatus.KILLED}" == "KILLED"
    assert {str(s) for s in TERMINAL} == {"FINISHED", "FAILED", "KILLED"}
    assert [str(s) for s in TrialState] == ["finished", "running", "failed", "killed", "stale", "pending", "queued",
                                            "pruned"]
