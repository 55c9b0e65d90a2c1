"""The store's revocations concern: what flask-taskq keeps for it, by meaning."""

from __future__ import annotations

from typing import Protocol


class RevocationStore(Protocol):
    """Revoked task ids (with terminate flags) and how workers keep an up-to-date copy."""
