"""Counts in and out: budgets are written 300M or 1.5G in study files and printed the same way."""
from __future__ import annotations

import pytest

from sksearch.units import format_count, parse_count


@pytest.mark.parametrize("text, n", [("300M", 300_000_000), ("1.5G", 1_500_000_000), ("2e9", 2_000_000_000),
                                     ("25k", 25_000), (4_000_000, 4_000_000), (2.0e6, 2_000_000), (" 7 M ", 7_000_000)])
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("bad", ["lots", "5X", "1.2.3M", ""])
def test_parse_count_rejects_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match="300M"):
        parse_count(bad)


@pytest.mark.parametrize("n, text", [(612_300_000, "612M"), (1_500_000_000, "1.5G"), (25_000, "25K"), (999, "999"),
                                     (4_462_710_784, "4.46G"), (None, "-"), ("x", "-")])
def test_format_count(n, text):
    assert format_count(n) == text


def test_round_trip_keeps_three_significant_digits():
    assert parse_count(format_count(27_479_784)) == 27_500_000
