"""Errors raised by pixclass. Each message says what went wrong and what to do."""


class PixclassError(Exception):
    """Base class for every error pixclass raises on purpose."""


class DataError(PixclassError):
    """Bad input data: an unreadable image, a malformed CSV, an unknown class name."""


class ConfigError(PixclassError):
    """A bad option or setting, or something missing that the user must supply."""


class NotFittedError(PixclassError):
    """A model or run is used before it has been trained."""


class OfflineError(ConfigError):
    """Weights or data would have to be downloaded, and the network is not reachable."""
