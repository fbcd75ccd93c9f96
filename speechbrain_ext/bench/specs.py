"""Parsing the benchmark command lines' mixer specifications and number lists.

A mixer specification is a registered name, optionally with options:
``"mhsa"``, ``"mhsa:position=rotary"``, ``"sparse:stride=16,mode=fixed"``. Values are read as
JSON where they parse (numbers, ``null``, ``true``), else kept as strings.

Example
-------
>>> parse_mixer_spec("mhsa:position=rotary")
('mhsa', {'position': 'rotary'})
>>> parse_mixer_spec("sparse:stride=16,causal=false,position=null")
('sparse', {'stride': 16, 'causal': False, 'position': None})
>>> parse_numbers("10,20.5", float)
[10.0, 20.5]
"""

import json


def parse_mixer_spec(spec: str) -> tuple[str, dict]:
    """``"name:key=value,..."`` → (name, options)."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"empty mixer name in {spec!r}")
    options = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"mixer option {item!r} in {spec!r} is not key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def parse_numbers(text, kind=int) -> list:
    """``"1,2,3"`` (or a list of such strings) → ``[1, 2, 3]`` (``kind`` converts each item)."""
    parts = [text] if isinstance(text, str) else list(text)
    try:
        values = [kind(item) for part in parts for item in str(part).split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"expected positive numbers, got {text!r}")
    return values
