"""lite-rm: compact cross-encoder reward models, trained in three stages and scored fast on CPUs.

``import lite_rm`` stays light and never imports torch: training names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lite_rm.data import DataError, PreferencePair, load_preferences
from lite_rm.errors import LiteRMError
from lite_rm.scoring.encoding import InputRule

if TYPE_CHECKING:  # for type checkers and IDEs only: at run time these load on first use (below)
    from lite_rm.exporting import export_bundle
    from lite_rm.scoring.scorer import Scorer
    from lite_rm.training.config import TrainConfig
    from lite_rm.training.pipeline import train

__version__ = "0.1.0"

# name -> module; imported on first attribute access (PEP 562) so that torch loads only for training.
_LAZY = {
    "Scorer": "lite_rm.scoring.scorer",
    "train": "lite_rm.training.pipeline",
    "TrainConfig": "lite_rm.training.config",
    "export_bundle": "lite_rm.exporting",
}

__all__ = ["DataError", "InputRule", "LiteRMError", "PreferencePair", "Scorer", "TrainConfig", "export_bundle",
           "load_preferences", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lite_rm' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too (tab completion, dir()), without importing them
    return sorted({*globals(), *_LAZY})
