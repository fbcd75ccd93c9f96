"""A tiny name → builder registry shared by mixers, encoders, probes and quantizers.

Example
-------
>>> from speechbrain_ext.registry import Registry
>>> COLORS = Registry("color")
>>> @COLORS.register("red")
... def make_red(*, shade=1):
...     return ("red", shade)
>>> COLORS.build("red", shade=2)
('red', 2)
>>> COLORS.names()
['red']
>>> COLORS.build("blu")
Traceback (most recent call last):
...
KeyError: "unknown color 'blu'; valid names: red"
"""

from collections.abc import Callable


class Registry:
    """Maps yaml names to classes or factory functions.

    Arguments
    ---------
    kind : str
        What is registered (``"mixer"``, ``"encoder"``...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        """Decorator registering ``obj`` under ``name``; a name may be taken once."""

        def decorator(obj: Callable) -> Callable:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Callable:
        """The class or factory registered under ``name``.

        Raises ``KeyError`` listing every valid name when ``name`` is unknown.
        """
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def build(self, name: str, **kwargs):
        """Build the entry registered under ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
