"""Lepton trainer: elastic PyTorch training, checkpoints, progress reporting and serving."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``lepton_trainer.report(...)``, imported on first use (nothing else of the package is)."""
    if name == "report":
        from lepton_trainer.reporting import report

        return report
    raise AttributeError(name)
