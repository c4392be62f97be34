"""Where ../shared's research-use data sits: read in place by tests, never copied into the repository."""
from pathlib import Path


def viton_dir() -> Path:
    """shared/data/viton beside the checkout (next to a clone, or next to the folder of worktrees)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "viton"
        if candidate.is_dir():
            return candidate
    raise AssertionError(f"no shared/data/viton above {Path(__file__).parent}: the VITON samples are missing")
