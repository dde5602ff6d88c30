"""The exceptions a user of clvlab can cause, all of one family."""


class ClvlabError(Exception):
    """Base class of every error clvlab raises on purpose."""


class DataError(ClvlabError, ValueError):
    """The transactions (or a table derived from them) are not usable as given."""


class ConfigError(ClvlabError, ValueError):
    """A run config is missing, malformed or has a wrong key or value."""


class ClvlabWarning(UserWarning):
    """Something the user may want to fix, though clvlab could go on (e.g. a future as_of)."""
