"""The one base class of every error lite-rm reports to a user, and the errors shared by several layers.

Each error keeps the built-in base it had (``ValueError``, ``RuntimeError``, ``ImportError``) so that code
catching those still works; the CLI catches :class:`LiteRMError` once and prints its message (no traceback).
"""

from __future__ import annotations


class LiteRMError(Exception):
    """A problem lite-rm explains in its message: what, where (file, line, field), expected, found."""


class ConfigError(LiteRMError, ValueError):
    """A bad configuration or option value (training config, export options, a quantization preset);
    the message names the key."""


class ExportError(LiteRMError, ValueError):
    """A checkpoint that cannot be exported as asked (not a one-label reward model, custom code, no
    tokenizer, no validation pairs); the message says what to give instead."""


class InputError(LiteRMError, ValueError):
    """An input lite-rm cannot use: a folder of the wrong kind (a bundle for a checkpoint, a run folder
    without results), corrupted metadata, a head name, too few comparisons; the message says what to give."""


class ResumeStateError(LiteRMError, ValueError):
    """A run or resumable state that cannot be continued (other data, other settings, unreadable); the
    message names the folder and says what to do."""
