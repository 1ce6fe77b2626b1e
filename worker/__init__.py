"""rosesync: keeps a SQL warehouse in step with a Rose Rocket TMS."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__``, looked up when first asked for (PEP 562): only the API client's
    User-Agent needs it, and importlib.metadata cost every command, ``--help`` and ``status``
    included, about 60 ms of start-up (issue 16, target 2)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("rosesync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
