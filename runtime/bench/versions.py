"""Installed package versions, for records and `tryon info`."""
from importlib import metadata


def installed_versions(*names: str) -> dict[str, str]:
    """{name: version} for those of `names` that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
