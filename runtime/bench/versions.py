"""Installed package versions, for records and `tryon info`."""
from contextlib import suppress
from importlib import metadata


def installed_versions(*names: str) -> dict[str, str]:
    """{name: version} for those of `names` that are installed."""
    found = {}
    for name in names:
        with suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
