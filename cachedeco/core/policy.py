"""Pure expiry policy: TTLs with proportional jitter, soft/hard expiry, early refresh (XFetch).

An entry is *fresh* until its soft expiry (``ttl`` with jitter), then *stale* for ``stale_ttl``
seconds (served while one refresh runs), then gone: Redis holds it for ``ttl + stale_ttl``.
Early refresh follows Vattani et al. (VLDB 2015): recompute when
``now - delta * beta * ln(random()) >= expiry``, so the busier a key and the slower its load,
the earlier one caller refreshes it.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cachedeco.errors import ConfigurationError

__all__ = [
    "MIN_TTL",
    "Policy",
    "TtlFn",
    "check_jitter",
    "check_optional_ttl",
    "check_ttl",
    "check_ttl_option",
    "clamp_ttl",
    "xfetch",
]

MIN_TTL = 1.0  # seconds: no stored TTL is shorter, whatever the jitter draws
#: A TTL chosen from the result: ``ttl(result) -> seconds`` (a number or a timedelta).
TtlFn = Callable[[Any], object]


def check_ttl(value: object, what: str = "ttl", *, allow_zero: bool = False) -> float:
    """Finite seconds > 0 (or >= 0 when ``allow_zero``) from a number or a ``timedelta``,
    else ConfigurationError."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be a number of seconds or a timedelta, "
                                 f"not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{what} must be a finite number {bound}, not {value!r}")
    return seconds


def check_optional_ttl(value: object, what: str = "ttl") -> float | None:
    """None, or a finite number of seconds > 0."""
    return None if value is None else check_ttl(value, what)


def check_ttl_option(value: object) -> float | TtlFn | None:
    """A decorator's ``ttl``: None (the registry's), seconds, a timedelta, or a callable
    ``ttl(result) -> seconds`` (checked to take one argument)."""
    if value is None or not callable(value):
        return check_optional_ttl(value)
    try:
        inspect.signature(value).bind(None)
    except TypeError:
        raise ConfigurationError(
            f"a callable ttl takes the result and returns seconds (ttl(result) -> seconds); "
            f"{value!r} cannot be called with one argument") from None
    except ValueError:  # a builtin without a signature: trust it
        pass
    return value


def clamp_ttl(value: object) -> float:
    """The seconds a callable ttl returned, clamped like any TTL (never below MIN_TTL);
    ConfigurationError when it is not a finite number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"a callable ttl must return a finite number of seconds or "
                                 f"a timedelta, not {value!r}")
    return max(float(value), MIN_TTL)


def check_jitter(value: object) -> float:
    """A fraction in [0, 1), else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"jitter must be a fraction in [0, 1), not {value!r}")
    if not 0 <= float(value) < 1:
        raise ConfigurationError(f"jitter must be a fraction in [0, 1), not {value!r}")
    return float(value)


def xfetch(now: float, expiry: float, delta: float, beta: float, rand: float) -> bool:
    """True when this caller should refresh early (XFetch); ``rand`` is uniform in (0, 1]."""
    return now - delta * beta * math.log(rand) >= expiry


@dataclass(frozen=True, slots=True)
class Policy:
    """The expiry settings of one function, fixed when it is bound to a registry."""

    ttl: float  # with ttl_of, the registry's default: it bounds tombstones and tag keys
    jitter: float
    stale_ttl: float = 0.0
    beta: float = 0.0  # 0 disables early refresh
    ttl_of: TtlFn | None = None  # a TTL chosen from each result

    def ttl_for(self, value: Any) -> float | None:
        """The TTL a callable ttl picks for ``value`` (clamped), or None without one."""
        return None if self.ttl_of is None else clamp_ttl(self.ttl_of(value))

    def draw_ttl(self, ttl: float | None = None) -> float:
        """A TTL in ``[ttl*(1-j), ttl*(1+j)]``, never below one second."""
        ttl = self.ttl if ttl is None else ttl
        if not self.jitter:
            return max(ttl, MIN_TTL)
        spread = ttl * self.jitter
        return max(ttl - spread + 2 * spread * random.random(), MIN_TTL)

    def expiry(self, now: float, delta: float, ttl: float | None = None) -> tuple[float, int]:
        """Soft expiry (epoch seconds) and the hard TTL in ms for an entry written ``now``
        (``ttl``: what a callable ttl chose, else the policy's)."""
        drawn = self.draw_ttl(ttl)
        return now + drawn, max(int((drawn + self.stale_ttl) * 1000), 1000)

    def refresh_early(self, now: float, soft: float, delta: float) -> bool:
        """Whether this hit should trigger an early refresh."""
        return self.beta > 0 and xfetch(now, soft, delta, self.beta, 1.0 - random.random())

    @property
    def hard_ms(self) -> int:
        """The longest an entry of this policy can live, in ms (for tombstones and tags)."""
        return int((self.ttl * (1 + self.jitter) + self.stale_ttl) * 1000) + 1000
