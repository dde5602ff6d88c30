"""Customer profiles kept current event by event (see :mod:`clvlab.profiles.store`)."""

from clvlab.profiles.events import EVENT_ID, read_events
from clvlab.profiles.store import ProfileStore

__all__ = ["EVENT_ID", "ProfileStore", "read_events"]
