"""Expected failures, each rendered as one actionable line (no stack trace)."""


class PasserelleError(Exception):
    """Base class: the message is the one line a person reads."""


class ConfigError(PasserelleError):
    """A configuration file is missing, malformed or fails its schema."""


class KeyFileError(PasserelleError):
    """The pseudonymisation key is missing, unreadable or too short."""
