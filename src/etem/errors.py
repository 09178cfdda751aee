"""User-facing errors.

Anything a user can cause (bad config, missing or corrupt input, wrong array shape) raises a
subclass of :class:`EtemError`. The CLI prints it as one line, ``etem: error: <message>``, and
exits with a non-zero code, without a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class EtemError(Exception):
    """Base class of errors caused by user input; printed as one line by the CLI."""

    exit_code = 2


class ConfigError(EtemError):
    """The configuration is invalid; the message names the key and the reason."""


class InputError(EtemError):
    """An input file or array is missing, truncated, corrupt or of the wrong shape/type."""

    exit_code = 3


class ValidationError(EtemError):
    """A produced object (structure, image, table) failed a physical validation rule."""

    exit_code = 4
