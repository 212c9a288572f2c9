"""The package as users get it: every import declared, and a built wheel that runs a sweep on its own.

The wheel test builds from a copy of the working tree (no stale ``build/``), installs the wheel, not editable, into
a fresh virtual environment and runs a one-trial sweep from an unrelated directory. Nothing is downloaded: the
wheel goes in with ``--no-deps --no-index``, and the fresh environment then sees this environment's installed
dependencies through a ``.pth`` file (written after the install, so pip never sees, or touches, this project's own
editable install).
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.mlflow_server import local_store

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers", "hydra_plugins")
# What a build needs from the tree; everything else (.git, venvs, stores, caches) stays behind.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".sweeps", "mlruns", "mlartifacts", "multirun", "outputs",
                                    "mlflow.db", "tests", "benchmarks")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # An optional extra's imports count too: orchestrator/search_plan.py names the extra when they are missing.
    requirements = [*project["dependencies"], *project["optional-dependencies"]["optuna"]]
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", requirement).group(0)) for requirement in requirements}


def _imported_top_level_modules() -> dict[str, str]:
    """Top-level module -> one file importing it, over every module of the packages (imports inside functions
    included: the workers import torch lazily)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.partition(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _declared()
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in PACKAGES or module == "__future__":
            continue
        distributions = {_normalise(d) for d in providers.get(module, [])}
        if not distributions & declared:
            undeclared.append(f"{module} (imported in {where}; provided by {sorted(distributions) or 'nothing installed'})")
    assert not undeclared, "imported but not in pyproject.toml's dependencies: " + "; ".join(undeclared)


def test_the_config_tree_is_package_data() -> None:
    from orchestrator.settings import CONF_DIR

    assert CONF_DIR == ROOT / "orchestrator" / "conf"
    assert (CONF_DIR / "config.yaml").is_file()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["orchestrator"]
    shipped = {p for pattern in patterns for p in (ROOT / "orchestrator").glob(pattern)}
    assert set(CONF_DIR.rglob("*.yaml")) == shipped, "every YAML file of the config tree is in the wheel"


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_in_a_fresh_environment_runs_a_sweep(tmp_path: Path) -> None:
    started = time.monotonic()
    source, wheels, venv, elsewhere = (tmp_path / name for name in ("src", "wheels", "venv", "elsewhere"))
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("curvature_sweeps-*.whl")
    built = time.monotonic()

    # As a user's shell has it: this checkout nowhere on the path, no store or cluster named.
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "VIRTUAL_ENV",
                                                            "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", str(wheel)])
    fresh_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           cwd=elsewhere, env=env).stdout.strip())
    (fresh_site / "curvature_sweeps_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    located = _run([python, "-c", "import orchestrator.cli, orchestrator.settings as s; "
                    "print(orchestrator.cli.__file__); print(s.CONF_DIR)"], cwd=elsewhere, env=env).stdout.split()
    assert all(Path(p).is_relative_to(fresh_site) for p in located), f"not the installed wheel: {located}"
    installed = time.monotonic()

    result = subprocess.run([str(venv / "bin" / "sweep"), "run", "dataset=digits", "trainer.epochs=1",
                             "hydra/launcher=basic"], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"sweep run exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    swept = time.monotonic()

    client = MlflowClient(local_store(elsewhere / ".sweeps")[0])
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert [r.info.status for r in trials] == ["FINISHED"], [(r.data.tags, r.info.status) for r in runs]
    print(f"\nwheel test: build {built - started:.1f} s, venv + install {installed - built:.1f} s, "
          f"sweep {swept - installed:.1f} s, total {swept - started:.1f} s")
