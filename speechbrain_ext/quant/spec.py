"""Quantization specifications: ``"w1a1"``, ``"w4a8,keep=front_end|head"``, or a dict.

String form::

    PRECISION[,OPTION]...
    PRECISION := fp32 | w<B>a<B>          B in 1, 2, 4, 8, 32 (32 = left FP32)
    OPTION    := keep=PATTERNS            modules left FP32
               | only=PATTERNS            quantize these modules only
               | attention=on|off         quantize Q, K, V and attention probabilities (on)
               | weights=NAME | acts=NAME registry names of the quantizers (default by bits)
    PATTERNS  := PATTERN[|PATTERN]...     fnmatch patterns on qualified module names

A pattern matches a module whose name matches it, and everything below that module
(``keep=front_end`` keeps ``front_end.proj`` too; ``keep=*.conv`` every convolution module).
The dict (or JSON) form has the same keys: ``{"bits": "w1a1", "keep": ["front_end"],
"only": [...], "attention": true, "weights": "bwn", "acts": "elastic_binary"}``.

Example
-------
>>> spec = parse_spec("w1a2,keep=front_end|encoder.layers.0")
>>> spec.weight_bits, spec.act_bits, spec.keep
(1, 2, ('front_end', 'encoder.layers.0'))
>>> spec.selects("front_end.proj"), spec.selects("encoder.layers.1.ffn.linear1")
(False, True)
>>> parse_spec({"bits": "w4a8", "attention": False}).label
'w4a8,attention=off'
>>> parse_spec("w3a1")
Traceback (most recent call last):
...
ValueError: bad precision 'w3a1' in quantization spec 'w3a1': weight bits must be one of 1, 2, ...
"""

import fnmatch
import json
import re
from dataclasses import dataclass

from speechbrain_ext.quant.quantizers import BITS, QUANTIZERS

#: The precisions the project names (any w<B>a<B> with B in BITS parses).
NAMED_SPECS = ("fp32", "w1a1", "w1a2", "w1a4", "w2a8", "w4a8", "w8a8")
OPTIONS = ("keep", "only", "attention", "weights", "acts")


@dataclass(frozen=True)
class QuantSpec:
    """A parsed specification (see the module docstring)."""

    weight_bits: int = 32
    act_bits: int = 32
    keep: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    attention: bool = True
    weight_quantizer: str | None = None
    act_quantizer: str | None = None

    @property
    def is_fp32(self) -> bool:
        """True when nothing is quantized."""
        return self.weight_bits >= 32 and self.act_bits >= 32

    @property
    def precision(self) -> str:
        """``"w1a1"`` / ``"fp32"``."""
        return "fp32" if self.is_fp32 else f"w{self.weight_bits}a{self.act_bits}"

    @property
    def label(self) -> str:
        """The spec as a canonical string (parses back to an equal spec)."""
        parts = [self.precision]
        if self.keep:
            parts.append("keep=" + "|".join(self.keep))
        if self.only is not None:
            parts.append("only=" + "|".join(self.only))
        if not self.attention:
            parts.append("attention=off")
        if self.weight_quantizer:
            parts.append(f"weights={self.weight_quantizer}")
        if self.act_quantizer:
            parts.append(f"acts={self.act_quantizer}")
        return ",".join(parts)

    def selects(self, name: str) -> bool:
        """Whether the module called ``name`` is quantized (not kept, and in ``only``)."""
        if any(_matches(name, p) for p in self.keep):
            return False
        return self.only is None or any(_matches(name, p) for p in self.only)


def _matches(name: str, pattern: str) -> bool:
    """``name`` or one of its parents (``a.b`` for ``a.b.c``) matches ``pattern``."""
    parts = name.split(".") if name else [""]
    return any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _bits(text: str, which: str, precision: str, spec: str) -> int:
    value = int(text)
    if value not in BITS:
        valid = ", ".join(map(str, BITS))
        raise ValueError(
            f"bad precision {precision!r} in quantization spec {spec!r}: {which} bits must be "
            f"one of {valid}"
        )
    return value


def _precision(text: str, spec: str) -> tuple[int, int]:
    text = text.strip().lower()
    if text == "fp32":
        return 32, 32
    match = re.fullmatch(r"w(\d+)a(\d+)", text)
    if not match:
        raise ValueError(
            f"bad precision {text!r} in quantization spec {spec!r}: expected fp32 or w<B>a<B> "
            f"such as {', '.join(NAMED_SPECS[1:])}"
        )
    return _bits(match[1], "weight", text, spec), _bits(match[2], "activation", text, spec)


def _patterns(value, key: str, spec) -> tuple[str, ...]:
    items = value.split("|") if isinstance(value, str) else list(value)
    items = tuple(str(p).strip() for p in items)
    if not items or not all(items):
        raise ValueError(f"empty pattern in {key}= of quantization spec {spec!r}")
    return items


def _flag(value, key: str, spec) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{key}={value!r} in quantization spec {spec!r}: expected on or off")


def _quantizer(value, key: str, spec) -> str:
    if value not in QUANTIZERS:
        raise ValueError(
            f"{key}={value!r} in quantization spec {spec!r}: unknown quantizer; valid names: "
            + ", ".join(QUANTIZERS.names())
        )
    return value


def parse_spec(spec) -> QuantSpec:
    """A :class:`QuantSpec` from a string, a dict, a JSON string, or a :class:`QuantSpec`.

    Raises ``ValueError`` naming the bad part of the spec.
    """
    if isinstance(spec, QuantSpec):
        return spec
    if isinstance(spec, str) and spec.strip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as error:
            raise ValueError(f"quantization spec is not valid JSON: {error}") from None
    if isinstance(spec, str):
        head, *rest = [part.strip() for part in spec.split(",")]
        options = {}
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"option {item!r} in quantization spec {spec!r} is not key=value")
            options[key.strip()] = value.strip()
        fields = {"bits": head, **options}
    elif isinstance(spec, dict):
        fields = dict(spec)
        if "bits" not in fields:
            raise ValueError(f"quantization spec {spec!r} has no 'bits' key (e.g. 'w1a1')")
    else:
        raise TypeError(f"quantization spec must be a str or dict, got {type(spec).__name__}")
    unknown = sorted(set(fields) - {"bits", *OPTIONS})
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} in quantization spec {spec!r}; valid options: "
            + ", ".join(OPTIONS)
        )
    weight_bits, act_bits = _precision(str(fields["bits"]), spec)
    return QuantSpec(
        weight_bits=weight_bits,
        act_bits=act_bits,
        keep=_patterns(fields["keep"], "keep", spec) if "keep" in fields else (),
        only=_patterns(fields["only"], "only", spec) if "only" in fields else None,
        attention=_flag(fields.get("attention", True), "attention", spec),
        weight_quantizer=_quantizer(fields["weights"], "weights", spec)
        if "weights" in fields
        else None,
        act_quantizer=_quantizer(fields["acts"], "acts", spec) if "acts" in fields else None,
    )
