"""The sandbox's coin ledger: which API keys exist and how many coins each has left.

Keys are only ever shown as a *key id* (first characters and a hash), never in full.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping


def key_id(api_key: str) -> str:
    """A printable, non-reversible name for an API key: its first characters and a hash.

    At most 4 characters and a quarter of the key are shown, so a short key is not given away.

    :param api_key: the key.
    """
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{api_key[: min(4, len(api_key) // 4)]}...{digest}"


class Ledger:
    """Coin balances per API key.

    Used from the event loop thread only, so it takes no lock.

    :param balances: starting balance per key.
    """

    def __init__(self, balances: Mapping[str, int]) -> None:
        self._start = dict(balances)
        self._balances: dict[str, int] = {}
        self._ids: dict[str, str] = {}
        self.charged: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """Back to the starting keys and balances; forget every charge."""
        self._balances = dict(self._start)
        self._ids = {k: key_id(k) for k in self._balances}
        self.charged.clear()

    def set_balance(self, api_key: str, coins: int) -> str:
        """Add a key, or set the balance of a known one. Returns its key id."""
        if coins < 0:
            raise ValueError("coins must not be negative")
        self._balances[api_key] = coins
        return self._ids.setdefault(api_key, key_id(api_key))

    def rotate(self, old_key: str, new_key: str) -> str:
        """Replace a key by a new one of the same account (same key id, jobs and balance), as a key
        rotation at HitPaw does; the old key stops working at once. Returns the account's key id."""
        if old_key not in self._balances:
            raise ValueError("old_key is not a known key")
        if not new_key.strip() or new_key in self._balances:
            raise ValueError("new_key must be a new, non-empty key")
        self._balances[new_key] = self._balances.pop(old_key)
        self._ids[new_key] = self._ids.pop(old_key)
        return self._ids[new_key]

    def owner_id(self, api_key: str | None) -> str | None:
        """The key id of a valid key, or None for a missing or unknown key."""
        if not api_key:
            return None
        return self._ids.get(api_key) if api_key in self._balances else None

    def balance(self, api_key: str) -> int:
        return self._balances.get(api_key, 0)

    def try_charge(self, api_key: str, coins: int) -> bool:
        """Take ``coins`` from a key's balance; False (and nothing taken) when it has too few."""
        balance = self._balances.get(api_key)
        if balance is None or balance < coins:
            return False
        self._balances[api_key] = balance - coins
        self.charged[self._ids[api_key]] += coins
        return True

    def balances_by_id(self) -> dict[str, int]:
        return {self._ids[k]: v for k, v in self._balances.items()}
