"""Durations as written in process definitions: wall-clock, business hours or business days."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

DurationKind = Literal["wall", "business_hours", "business_days"]

_EXAMPLES = (
    "write e.g. '45 minutes', '4 hours', '3 business hours', '2 business days' or ISO 8601 'PT4H'"
)
# Longer durations are almost certainly typos, and would overflow datetime arithmetic later.
_MAX_SECONDS = 3660 * 86400
_MAX_DAYS = 2600

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_NUMBER = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)"
_WORDS = re.compile(
    rf"^(?P<number>{_NUMBER})\s*(?P<business>business\s+)?"
    r"(?P<unit>second|minute|hour|day|week)s?$",
    re.IGNORECASE,
)
_ISO = re.compile(
    r"^(?P<sign>[+-])?P(?:(?P<years>[\d.,]+)Y)?(?:(?P<months>[\d.,]+)M)?(?:(?P<weeks>[\d.,]+)W)?"
    r"(?:(?P<days>[\d.,]+)D)?(?:T(?:(?P<hours>[\d.,]+)H)?(?:(?P<minutes>[\d.,]+)M)?"
    r"(?:(?P<seconds>[\d.,]+)S)?)?$",
    re.IGNORECASE,
)
_ISO_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class Duration(BaseModel):
    """A parsed duration.

    Attributes:
        kind: ``wall`` (absolute elapsed time), ``business_hours`` (open time only) or
            ``business_days`` (the same time of day N working days later).
        seconds: For ``wall`` and ``business_hours``: seconds of wall time or of open time.
        days: For ``business_days``: the number of working days.
        text: The text the duration was written as.
    """

    model_config = ConfigDict(frozen=True)

    kind: DurationKind
    seconds: int = 0
    days: int = 0
    text: str

    @model_validator(mode="after")
    def _check_amount(self) -> Self:
        if self.kind == "business_days":
            if self.days < 1 or self.seconds != 0:
                raise ValueError(f"business-day duration {self.text!r} needs days >= 1, no seconds")
        elif self.seconds < 1 or self.days != 0:
            raise ValueError(f"duration {self.text!r} needs seconds >= 1 and no days")
        return self

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Parse a duration as written in a definition.

    Accepts ``45 minutes``, ``4 hours``, ``2 days``, ``1 week`` (wall-clock), ``3 business hours``,
    ``30 business minutes``, ``2 business days`` and ISO 8601 durations such as ``PT4H`` or
    ``P1DT2H`` (wall-clock). Case and surrounding whitespace are ignored; fractions are rounded to
    the nearest second.

    Args:
        text: The duration as written.

    Returns:
        The parsed duration; its ``text`` is the input without surrounding whitespace.

    Raises:
        ValueError: The text is not a duration, is negative or zero, or asks for a fraction of a
            business day. The message names the text and shows what to write instead.
    """
    stripped = text.strip()
    words = _WORDS.match(stripped)
    if words:
        amount = _number(words["number"], stripped)
        unit = words["unit"].lower()
        business = words["business"] is not None
        _check_sign(amount, stripped)
        if business and unit == "day":
            if amount != amount.to_integral_value():
                raise ValueError(
                    f"{stripped!r}: business days must be a whole number; write e.g. "
                    "'2 business days', or use business hours such as '12 business hours'"
                )
            if amount > _MAX_DAYS:
                raise ValueError(f"{stripped!r} is too long; durations are at most ten years")
            return Duration(kind="business_days", days=int(amount), text=stripped)
        if business and unit not in ("minute", "hour"):
            raise ValueError(f"{stripped!r} is not a duration; {_EXAMPLES}")
        seconds = _whole_seconds(amount * _UNIT_SECONDS[unit], stripped)
        return Duration(
            kind="business_hours" if business else "wall", seconds=seconds, text=stripped
        )

    iso = _ISO.match(stripped)
    if iso and (iso["years"] or iso["months"]):
        raise ValueError(
            f"{stripped!r}: ISO 8601 years and months have no fixed length; "
            "write days or weeks instead, e.g. 'P30D'"
        )
    parts = {name: iso[name] for name in _ISO_UNITS} if iso else {}
    if iso is None or not any(parts.values()) or stripped.upper().endswith("T"):
        raise ValueError(f"{stripped!r} is not a duration; {_EXAMPLES}")
    if iso["sign"] == "-":
        raise ValueError(f"durations must be positive, found {stripped!r}")
    total = sum(
        (_number(value, stripped) * _ISO_UNITS[name] for name, value in parts.items() if value),
        Decimal(0),
    )
    return Duration(kind="wall", seconds=_whole_seconds(total, stripped), text=stripped)


def _number(number: str, text: str) -> Decimal:
    try:
        return Decimal(number.replace(",", "."))
    except ArithmeticError:  # "1.2.3" slips through the ISO pattern
        raise ValueError(f"{text!r} is not a duration; {_EXAMPLES}") from None


def _check_sign(amount: Decimal, text: str) -> None:
    if amount < 0:
        raise ValueError(f"durations must be positive, found {text!r}")
    if amount == 0:
        raise ValueError(f"duration {text!r} must be longer than zero")


def _whole_seconds(amount: Decimal, text: str) -> int:
    _check_sign(amount, text)
    # compare before rounding: quantize fails on numbers past Decimal's 28 digits
    if amount > _MAX_SECONDS:
        raise ValueError(f"{text!r} is too long; durations are at most ten years")
    seconds = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if seconds < 1:
        raise ValueError(f"duration {text!r} must be at least one second")
    return seconds
