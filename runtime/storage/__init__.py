"""Per-actor storage: the API actors use, over the shared LMDB environment."""

from .storage import Storage
from .transaction import Transaction

__all__ = ["Storage", "Transaction"]
