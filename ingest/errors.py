"""User-facing failures of ingest, each with a message that says what to fix."""

from __future__ import annotations


class IngestError(Exception):
    """Base for errors a user can act on (shown without a traceback)."""


class ProfileError(IngestError):
    """A column profile (TOML) is malformed or names unknown fields."""


class FeedRefused(IngestError):
    """The whole file is refused: nothing is loaded and the previous snapshot is untouched."""

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


class DeclarationError(IngestError):
    """What the caller declared about a file (its provider code) cannot be right: nothing is
    read and nothing is recorded (a feed cannot be filed under a code that is not one)."""
