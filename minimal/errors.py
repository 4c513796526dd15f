"""The errors a user can cause, as opposed to bugs.

A `UserError` means something the user handed in is wrong: a setting out of its domain, a data
file that is not what it claims, a checkpoint from another run. Its message alone says what was
wrong and what was expected, so the command line prints just that line (exit code 2 for a bad
setting, 1 otherwise) and keeps tracebacks for bugs. Each class also derives from the built-in
error it refines (ValueError, FileNotFoundError), so code that catches those still works.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave is wrong; the message says what and what was expected."""


class ConfigError(UserError, ValueError):
    """A Config field out of its domain (a count below 1, a probability above 1, ...)."""


class DataError(UserError, ValueError):
    """A data file that is damaged or is not in the format its name or location promises."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, damaged, or from a run with other settings."""


class NonFiniteLossError(UserError, FloatingPointError):
    """Training produced NaN or inf; raised before any update or checkpoint used it."""


class OutputError(UserError, OSError):
    """A file could not be written (a full disk, a folder in its place, no permission); what was
    there before is intact."""


class BusyError(UserError, RuntimeError):
    """Another live run is writing into the same output folder."""
