"""Counts as people write them: 300M, 1.5G, 2e9 in; 612.3M out."""
from __future__ import annotations

import re
from typing import Any

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_count(value: Any) -> Any:
    """300M, 1.5G, 2e9 or 4000000 -> an int (MACs and params read better with suffixes)."""
    if isinstance(value, bool):
        return value  # let pydantic reject it
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", value)
        if not m:
            raise ValueError(f"expected a count such as 300M, 1.5G or 2e9 (got {value!r})")
        return int(round(float(m.group(1)) * _SUFFIX[m.group(2).upper()]))
    return value


def format_count(n: Any, digits: int = 3) -> str:
    """612300000 -> '612M' (3 significant digits); None or a non-number -> '-'."""
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{unit}"
    return f"{n:g}"
