"""The HTTP service (`tryon serve`): FastAPI over one loaded TryOn. Needs the `serve` extra."""
from .app import create_app

__all__ = ["create_app"]
