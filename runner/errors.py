"""Exceptions raised by xrun's core.

Core code raises these with a message that says what failed, where, and how to
fix it. Only the CLI turns them into exit codes (DESIGN §3)::

    XrunError                  exit 1 unless a subclass says otherwise
    ├── UsageError             2  bad command-line usage
    │   └── SpecError          2  bad spec (file:line key.path: message)
    │       └── EnvFileError   2  bad or stale environment file / lock
    ├── TrialsFailed           1  the work ran but some trials failed
    ├── StageFailed            1  a prepare or final stage failed
    ├── VerifyError            1  a bundle does not match its manifest
    └── InfraError             3  infrastructure missing or broken
        └── ProcessError       3  an external command failed
"""

from __future__ import annotations


class XrunError(Exception):
    """Root of every error xrun reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(XrunError):
    exit_code = 2


class SpecError(UsageError):
    """A spec (or a file it names) is invalid.

    ``file``/``line``/``path`` locate the problem; the message reads
    ``file:line key.path: what is wrong``.
    """

    def __init__(
        self, what: str, *, file: str | None = None, line: int | None = None, path: str = ""
    ) -> None:
        self.file, self.line, self.path, self.what = file, line, path, what
        where = ""
        if file:
            where = f"{file}:{line}" if line else file
        prefix = " ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {what}" if prefix else what)


class EnvFileError(SpecError):
    """An environment file or its lock is malformed, missing or stale."""


class TrialsFailed(XrunError):
    exit_code = 1


class StageFailed(XrunError):
    """A ``prepare`` stage (no trial ran) or a ``final`` stage (the sweep's results are kept) failed."""

    exit_code = 1


class VerifyError(XrunError):
    exit_code = 1


class InfraError(XrunError):
    exit_code = 3


class ProcessError(InfraError):
    """An external command exited non-zero; the message carries its stderr tail."""

    def __init__(self, message: str, *, returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output
