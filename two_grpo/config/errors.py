"""The one exception of bad user input (exit code 2). A module of its own so that anything, the schema's own
lazy imports included, can raise it without importing the schema."""


class ConfigError(ValueError):
    """A user-facing config problem; the message is one line that names the key and the fix."""
