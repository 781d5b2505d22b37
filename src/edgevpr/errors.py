"""Errors that reach the user as one clear line."""


class EdgeVPRError(Exception):
    """A user-facing error: the CLI prints its message alone, without a traceback."""


class ConfigError(EdgeVPRError):
    """A configuration value is unknown, missing or inconsistent."""


class DatasetError(EdgeVPRError):
    """A dataset folder, file name or ground-truth file is unusable."""


class ImageError(EdgeVPRError):
    """An image file cannot be decoded; the message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class OutputError(EdgeVPRError):
    """Writing a finished result failed (a full disk, say); ``result`` holds what was computed,
    so the caller can still show it."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result
