"""Kubernetes resource quantities, so that "16Gi" and "16384Mi" compare equal (pure)."""

from __future__ import annotations

import re
from fractions import Fraction

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")
_SUFFIXES: dict[str, Fraction] = {
    **{s: Fraction(2) ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Fraction(10) ** (-9 + 3 * i) for i, s in enumerate(("n", "u", "m"))},
    **{s: Fraction(10) ** (3 * (i + 1)) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


def parse_quantity(value: object) -> Fraction | None:
    """The exact value of a quantity ("8", "15800Mi", "1.5k", 3); None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    number, exponent, suffix = m.groups()
    out = Fraction(number)
    if exponent:
        out *= Fraction(10) ** int(exponent[1:])
    elif suffix:
        out *= _SUFFIXES[suffix]
    return out


def mib(value: int) -> str:
    """MiB as a quantity string."""
    return f"{value}Mi"
