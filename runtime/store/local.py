"""Where the interface, the memory and the SQLite stores were before issue 20 split them;
kept only while callers still import from here. Import from `tryon.store` instead."""
from .base import PersonStore
from .memory_store import MemoryStore
from .sqlite_store import SQLiteStore

__all__ = ["MemoryStore", "PersonStore", "SQLiteStore"]
