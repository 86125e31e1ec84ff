"""Configuration problems: collected with their location, raised together as one ConfigError."""

from __future__ import annotations

from typing import NamedTuple

from resilio.errors import ConfigError

__all__ = ["KeyPath", "Location", "Problems", "format_path"]

KeyPath = tuple[str | int, ...]
"""Where a value is in the configuration: keys and list indexes from the root."""


class Location(NamedTuple):
    """A 1-based line and column in a file."""

    line: int
    column: int


def format_path(path: KeyPath) -> str:
    """Format a key path the way error messages show it: ``pipelines.orders.create[3].retry``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


class Problems:
    """Every problem found in one configuration, with where each one is.

    Args:
        source: The file name (or ``<string>``/``<dict>``) shown in front of each problem.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []
        self._places: dict[str, tuple[int, int]] = {}  # each line's (line, column); none: (0, 0)
        self._values: dict[KeyPath, Location] = {}
        self._keys: dict[KeyPath, Location] = {}
        self._reported: set[KeyPath] = set()

    def mark(self, path: KeyPath, location: Location) -> None:
        """Record where the value at ``path`` starts."""
        self._values.setdefault(path, location)

    def mark_key(self, path: KeyPath, location: Location) -> None:
        """Record where the key of the value at ``path`` starts."""
        self._keys.setdefault(path, location)

    def mark_reported(self, path: KeyPath) -> None:
        """Record that the value at ``path`` is wrong and already reported (an unset variable).

        Later problems about that value (it is missing, it has the wrong type) would only
        repeat the first one, so :meth:`add` drops them; problems about its key are kept.
        """
        self._reported.add(path)

    def is_reported(self, path: KeyPath) -> bool:
        """Whether :meth:`mark_reported` was called for ``path``."""
        return path in self._reported

    def key_location(self, path: KeyPath) -> Location | None:
        """Return where the key of ``path`` is, if known."""
        return self._keys.get(path)

    def location(self, path: KeyPath, *, key: bool = False) -> Location | None:
        """Return where ``path`` is (its key's position if ``key``), else its nearest parent's."""
        table = self._keys if key else self._values
        found = table.get(path)
        if found is not None:
            return found
        for end in range(len(path) - 1, -1, -1):
            found = self._values.get(path[:end])
            if found is not None:
                return found
        return None

    def add(
        self, path: KeyPath, message: str, *, key: bool = False, location: Location | None = None
    ) -> None:
        """Record a problem at ``path``.

        Args:
            path: Where the problem is.
            message: What is wrong: what was expected and what was found.
            key: Point at the key rather than the value (for unknown keys).
            location: An explicit location, overriding the recorded ones.
        """
        if not key and path in self._reported:
            return  # the value's own problem (an unset variable) says it already
        where = location if location is not None else self.location(path, key=key)
        prefix = self.source if where is None else f"{self.source}:{where.line}:{where.column}"
        line = f"{prefix}: {format_path(path)}: {message}"
        if line not in self.lines:  # a default merged into many pipelines is reported once
            self.lines.append(line)
            self._places[line] = (0, 0) if where is None else (where.line, where.column)

    def extend(self, other: Problems) -> None:
        """Add every problem ``other`` recorded (its lines, with their positions)."""
        for line in other.lines:
            if line not in self.lines:
                self.lines.append(line)
                self._places[line] = other._places.get(line, (0, 0))

    def __bool__(self) -> bool:
        return bool(self.lines)

    def error(self) -> ConfigError:
        """Return one :class:`ConfigError` listing every problem, one per line, in file order.

        Problems without a position (about the whole file) come first; the others follow by
        line and column, whatever order the checks found them in.
        """
        places = self._places
        order = sorted(range(len(self.lines)), key=lambda i: (places.get(self.lines[i], (0, 0)), i))
        lines = [self.lines[i] for i in order]
        count = len(lines)
        head = f"{count} problem{'s' if count != 1 else ''} in {self.source}:"
        return ConfigError("\n".join([head, *("  " + line for line in lines)]), lines)

    def raise_if_any(self) -> None:
        """Raise :meth:`error` if any problem was recorded.

        Raises:
            ConfigError: Listing every problem.
        """
        if self.lines:
            raise self.error()
