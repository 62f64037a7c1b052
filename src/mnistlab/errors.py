"""The one exception type that entry scripts turn into a single-line message."""


class MnistlabError(Exception):
    """A user-facing error: its message is printed alone, without a traceback."""


class DataError(MnistlabError):
    """Missing, corrupt or inconsistent dataset files."""


class ConfigError(MnistlabError, ValueError):
    """A setting outside its allowed range, caught before any work starts."""


class NonFiniteLossError(MnistlabError):
    """Training diverged: the loss became NaN or infinite."""
