"""The error a user fixes in the config (the CLI exits with status 2 on it)."""


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and the fix."""
