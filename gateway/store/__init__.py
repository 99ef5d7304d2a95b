"""The store: SQL tables and their writes (``db``, ``outbox``), Redis (``redis_store``).

Use cases hand their changes to this package; nothing above it writes SQL of its own.
"""

from gateway.store.db import UNAVAILABLE, ValueRefused

__all__ = ["UNAVAILABLE", "ValueRefused"]
