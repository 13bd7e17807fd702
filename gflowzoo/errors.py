"""Error types. A :class:`UserError` is a mistake of the user (a wrong name, key, value or path): the CLI prints
its message in one block and exits with code 2, never with a traceback."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from typing import Any


class GflowzooError(Exception):
    """Base class of every error gflowzoo raises on purpose."""

    exit_code = 1


class UserError(GflowzooError):
    """Bad input from the user: unknown name, bad config key or value, missing data, unreadable file."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration key or value is invalid."""


class DataError(UserError):
    """A data set is missing, corrupt or in an unexpected layout."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, of another method, or not a gflowzoo checkpoint."""


class PluginError(GflowzooError):
    """A plugin failed to load or registered something invalid (for example a name clash)."""


class NameClash(PluginError):
    """A plugin registered a kind and name that another plugin registered first: the registration is refused (the
    first one keeps the name). ``refusal`` is the :class:`gflowzoo.registry.Refusal`; the message names both."""

    def __init__(self, message: str, refusal: Any = None) -> None:
        super().__init__(message)
        self.refusal = refusal


class TrainingDiverged(GflowzooError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def unknown_name(what: str, name: str, valid: Iterable[str], *, plugins_note: bool = False) -> UserError:
    """Build the error for an unknown ``name`` of kind ``what``: lists the valid names and the closest one. With
    ``plugins_note`` (a registered component's name) and ``GFLOWZOO_LOAD_PLUGINS`` set, the message says that the
    variable limits which plugins load (the name may belong to one left out)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(valid) if valid else "(none registered)"
    note = ""
    selection = os.environ.get("GFLOWZOO_LOAD_PLUGINS")
    if plugins_note and selection is not None:
        note = f" GFLOWZOO_LOAD_PLUGINS={selection!r} limits which plugins load."
    return UserError(f"Unknown {what} {name!r}.{hint} Valid {what} names: {listing}.{note}")
