"""``chinwag serve``: the chatbot service (FastAPI). Build it with ``create_app(settings)``."""

from chinwag.server.app import create_app

__all__ = ["create_app"]
