"""The normalised store. Importing this package registers every model on `Base.metadata`."""

from ptl.store import access, identity, matching, models, sources  # noqa: F401
from ptl.store.models import Base

__all__ = ["Base"]
