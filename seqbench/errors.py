"""The one error a user's input can cause: a bad configuration value, told in one line."""


class ConfigError(ValueError):
    """A bad configuration value; its message is one line naming the key, the value and what
    is allowed. Entry points print it as ``seqbench: error: <message>`` and exit 2."""


def fail(message: str) -> int:
    """Tell a refusal as every entry point does: one line on stderr; the exit code (2)."""
    import sys

    print(f"seqbench: error: {message}", file=sys.stderr)
    return 2
