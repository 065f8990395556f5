"""Errors a user can act on.

Every error raised at a boundary (file, config, CLI argument, store) is a :class:`MixplanError`
whose message says what is wrong, where, and how to fix it. The CLI prints the message alone
(no traceback) and exits with status 2; the app shows it as an error box.
"""

from __future__ import annotations


class MixplanError(Exception):
    """Base class of every error meant for the user."""


class ValidationError(MixplanError):
    """Bad input: a file, a config or an argument. Carries where the problem is.

    ``file``, ``row`` (1-based data row, counted after the header: for Parquet files and
    frames, which have no lines), ``line`` (1-based physical line of a text file, the header
    being line 1: what an editor shows, blank lines and quoted line breaks included) and
    ``column`` are optional; when given they are put in front of the message.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        fix: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file, self.row, self.line, self.column, self.fix = file, row, line, column, fix
        self.detail = message
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        text = (", ".join(where) + ": " if where else "") + message
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class ConfigError(ValidationError):
    """A study config (TOML) that cannot be used."""


class NotFoundError(MixplanError):
    """A study, trial or model name that does not exist."""


class StateError(MixplanError):
    """An operation that the current state forbids (e.g. an illegal trial transition)."""


class StoreBusyError(MixplanError):
    """The database stayed locked by another process past the retry deadline."""


class NotAvailableError(MixplanError):
    """A feature that is not built yet or whose optional dependency is missing."""


class FetchError(NotAvailableError):
    """A data source could not be downloaded: no network, a mirror or package missing, a
    download tool absent or timing out. Transient or environmental; the message names the
    package and the fix."""


class SourceFormatError(MixplanError):
    """A data source was fetched but does not hold what mixplan expects (a file missing from
    the package, nothing parseable in it): a bug or a changed upstream, never a network issue."""


class CommandsNotAllowedError(MixplanError):
    """A front end that others can reach (the web app) was asked to create, edit or dispatch a
    study whose runner starts programs, without the server's opt-in (engine.runners.safety)."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.fix = fix
        super().__init__(message + (f" Fix: {fix}" if fix else ""))
