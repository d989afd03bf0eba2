"""The one base class of every error lite-rm reports to a user.

Each error keeps the built-in base it had (``ValueError``, ``RuntimeError``, ``ImportError``) so that code
catching those still works; the CLI catches :class:`LiteRMError` once and prints its message (no traceback).
"""

from __future__ import annotations


class LiteRMError(Exception):
    """A problem lite-rm explains in its message: what, where (file, line, field), expected, found."""
