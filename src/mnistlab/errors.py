"""The one exception type that entry scripts turn into a single-line message."""


class MnistlabError(Exception):
    """A user-facing error: its message is printed alone, without a traceback."""


class DataError(MnistlabError):
    """Missing, corrupt or inconsistent dataset files."""
