"""ULIDs for event deduplication: well formed, unique and ordered."""

from __future__ import annotations

import threading
import time

from resilio_customerio.ulid import is_ulid, new_ulid


class TestUlid:
    def test_well_formed(self) -> None:
        """A new ULID is 26 Crockford base32 characters."""
        value = new_ulid()
        assert is_ulid(value)
        assert value == value.upper()

    def test_timestamp_prefix(self) -> None:
        """The first 10 characters encode the millisecond timestamp (never going backwards)."""
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        later = time.time() + 0.5
        prefix = new_ulid(now=later)[:10]
        millis = 0
        for char in prefix:
            millis = millis * 32 + alphabet.index(char)
        assert millis == int(later * 1000)
        assert new_ulid(now=0.0)[:10] == prefix  # a clock going backwards is not followed

    def test_monotonic_within_a_millisecond(self) -> None:
        """ULIDs made in the same millisecond sort in the order they were made."""
        values = [new_ulid(now=1_700_000_000.0) for _ in range(100)]
        assert values == sorted(values)
        assert len(set(values)) == 100

    def test_unique_across_threads(self) -> None:
        """Concurrent threads never get the same ULID."""
        seen: list[str] = []
        lock = threading.Lock()

        def work() -> None:
            made = [new_ulid() for _ in range(500)]
            with lock:
                seen.extend(made)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen)) == 4000

    def test_rejects_non_ulids(self) -> None:
        """Wrong length, alphabet, overflowing timestamp or type are not ULIDs."""
        for bad in ["", "0" * 25, "8" + "0" * 25, "I" * 26, 123, None]:
            assert not is_ulid(bad)
