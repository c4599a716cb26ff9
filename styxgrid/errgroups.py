"""Trio nurseries wrap every error in an ExceptionGroup; callers of a helper that
happens to use a nursery inside want the one error that happened, not a group."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def sole(error: BaseException) -> BaseException:
    """The single error inside (nested) one-member groups, or the group itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def leaves(error: BaseException) -> list[BaseException]:
    """Every error inside (nested) groups, in order."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


@contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a group holding one error as that error."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole(group)
        if error is group:
            raise
        raise error from None
