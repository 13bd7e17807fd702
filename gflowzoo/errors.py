"""Error types. A :class:`UserError` is a mistake of the user (a wrong name, key, value or path): the CLI prints
its message in one block and exits with code 2, never with a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
    """Two plugins registered the same kind and name; the message names both."""


class TrainingDiverged(GflowzooError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def unknown_name(what: str, name: str, valid: Iterable[str]) -> UserError:
    """Build the error for an unknown ``name`` of kind ``what``: lists the valid names and the closest one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(valid) if valid else "(none registered)"
    return UserError(f"Unknown {what} {name!r}.{hint} Valid {what} names: {listing}.")
