"""The data package's one error: missing or unusable data, with a message that names the command that fixes it."""


class DataError(RuntimeError):
    """Missing or unusable data; the message says which command fixes it."""
