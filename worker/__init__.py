"""rosesync: keeps a SQL warehouse in step with a Rose Rocket TMS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rosesync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
