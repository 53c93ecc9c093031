"""``CronExpression``: a cron expression in the five-field syntax of Cloudflare's cron
triggers, always in UTC, and the slots (epoch seconds) it names.

The library ``cronsim`` parses and evaluates it. Cloudflare numbers weekdays 1-7 from Sunday
(Quartz's way; ``0 17 * * 1`` is Sunday 5 PM), cronsim 0-6 from Sunday: the weekday field is
the one thing rewritten before cronsim sees the expression. Trio-free, no clock: callers pass
the time.
"""

from __future__ import annotations

from datetime import datetime, timezone

from cronsim import CronSim, CronSimError

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronExpressionError(ValueError):
    """Not a five-field cron expression Roost (and Cloudflare) accepts; the message says why."""


class CronExpression:
    """A checked expression; ``text`` as given, the slots from ``next_after``/``latest_at``."""

    __slots__ = ("text", "normalized", "_cronsim")

    def __init__(self, text: str) -> None:
        fields = text.split()
        if len(fields) != len(FIELDS):
            raise CronExpressionError(
                f"{text!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week)"
            )
        self.text = text
        self.normalized = " ".join(fields)
        self._cronsim = " ".join([*fields[:4], _weekdays(fields[4])])
        try:
            # cronsim checks every field when it is built; the time is only a start.
            CronSim(self._cronsim, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except CronSimError as exc:
            raise CronExpressionError(f"{text!r}: {str(exc).lower()}") from None
        if self.next_after(0.0) is None:
            raise CronExpressionError(f"{text!r} names no time that exists")

    def next_after(self, when: float) -> float | None:
        """The first slot strictly after ``when`` (epoch seconds), None if there is none."""
        start = datetime.fromtimestamp(when, timezone.utc)
        try:
            return next(CronSim(self._cronsim, start)).timestamp()
        except StopIteration:  # cronsim gives up past about 50 years without a match
            return None

    def latest_at(self, when: float) -> float | None:
        """The last slot at or before ``when``, None if there is none."""
        start = datetime.fromtimestamp(when, timezone.utc).replace(microsecond=0)
        # cronsim's reverse iteration starts one second before ``start`` at the latest.
        start = datetime.fromtimestamp(start.timestamp() + 1, timezone.utc)
        try:
            return next(CronSim(self._cronsim, start, reverse=True)).timestamp()
        except StopIteration:
            return None

    def __repr__(self) -> str:
        return f"CronExpression({self.text!r})"


def _weekdays(field: str) -> str:
    """Cloudflare's weekday field in cronsim's numbering: 1-7 (Sunday first) becomes 0-6, a
    name becomes its number (cronsim takes ``5L`` but not ``FRIL``), and a start with a step
    (``MON/2``) runs to Saturday, not on to cronsim's second Sunday, 7."""
    return ",".join(_weekday_term(term, field) for term in field.split(","))


def _weekday_term(term: str, field: str) -> str:
    base, slash, step = term.partition("/")
    if base == "*":
        return term  # cronsim's * and */n name the same days; a * also keeps cron's AND of the day fields
    if slash and (base.upper().endswith("L") or "#" in base):
        raise CronExpressionError(f"day-of-week {field!r}: a step goes with a range, a day or *")
    if slash and "-" not in base:
        base = f"{base}-7"  # a start with a step runs to Saturday
    if base.upper().endswith("L"):
        return _weekday(base[:-1], field) + "L" + slash + step
    if "#" in base:
        day, _, nth = base.partition("#")
        return _weekday(day, field) + "#" + nth + slash + step
    low, dash, high = base.partition("-")
    converted = _weekday(low, field) + (dash + _weekday(high, field) if dash else "")
    return converted + slash + step


def _weekday(value: str, field: str) -> str:
    upper = value.upper()
    if upper in WEEKDAY_NAMES:
        return str(WEEKDAY_NAMES.index(upper))
    if not upper.isdigit() or not 1 <= int(upper) <= 7:
        raise CronExpressionError(
            f"day-of-week {field!r}: weekdays are 1-7 from Sunday (1 = SUN, 7 = SAT, as Cloudflare's)"
            " or SUN-SAT"
        )
    return str(int(upper) - 1)
