"""Hydra finds launchers only in the ``hydra_plugins`` namespace package; the work is in ``orchestrator/``."""
