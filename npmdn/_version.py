"""The package version, in its own module so that no module imports ``npmdn/__init__``."""

__version__ = "0.1.0"
