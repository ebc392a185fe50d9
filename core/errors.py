"""The one small set of error classes rctr raises.

Every layer raises these with context (``raise NotFound(...) from exc``); the
daemon maps them to HTTP status codes once, the CLI maps them to exit codes
once.  The classes follow containerd's errdefs.
"""

from __future__ import annotations

__all__ = [
    "RctrError",
    "NotFound",
    "AlreadyExists",
    "InvalidArgument",
    "FailedPrecondition",
    "Conflict",
    "Unavailable",
    "Unsupported",
    "EX_CONFIG",
]

# The exit status of a process that refuses its configuration (sysexits.h): rctrd with a
# bad setting, which the CLI's on-demand start then reports as that setting's error.
EX_CONFIG = 78


class RctrError(Exception):
    """Base of every error rctr raises on purpose.

    ``hint`` is the sentence that tells the user what to do about it.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class NotFound(RctrError):
    """The named thing (container, image, file) does not exist."""


class AlreadyExists(RctrError):
    """A thing with that id or name exists already."""


class InvalidArgument(RctrError):
    """The request or the configuration is malformed."""


class FailedPrecondition(RctrError):
    """The request is valid but the thing is in the wrong state for it."""


class Conflict(RctrError):
    """Someone else holds the thing (a lock, a name in use)."""


class Unavailable(RctrError):
    """A host facility the operation needs is missing or refused."""


class Unsupported(RctrError):
    """rctr does not do this (yet), on this host or at all."""


class NoSpace(Unavailable):
    """The filesystem holding rctr's data is full (ENOSPC), or the user's quota is (EDQUOT)."""


NO_SPACE_HINT = ("the disk that holds rctr's data is full: remove containers and images you no "
                 "longer need (rctr rm, rctr image prune, rctr system prune), or give it more room")


def no_space(exc: OSError) -> NoSpace | None:
    """``exc`` as a ``NoSpace`` error that says what to do, if it is a full disk."""
    import errno

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return NoSpace(f"no space left on device{where}", hint=NO_SPACE_HINT)

