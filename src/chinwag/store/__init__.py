"""The conversation database: conversations, messages and pinned facts in SQLite."""

from chinwag.store.database import (
    SCHEMA_VERSION,
    Conversation,
    Store,
    StoredMessage,
    default_db_path,
)

__all__ = ["SCHEMA_VERSION", "Conversation", "Store", "StoredMessage", "default_db_path"]
