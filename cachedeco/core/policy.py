"""Pure expiry policy: TTLs with proportional jitter, soft/hard expiry, early refresh (XFetch).

An entry is *fresh* until its soft expiry (``ttl`` with jitter), then *stale* for ``stale_ttl``
seconds (served while one refresh runs), then gone: Redis holds it for ``ttl + stale_ttl``.
Early refresh follows Vattani et al. (VLDB 2015): recompute when
``now - delta * beta * ln(random()) >= expiry``, so the busier a key and the slower its load,
the earlier one caller refreshes it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cachedeco.errors import ConfigurationError

__all__ = ["MIN_TTL", "Policy", "check_jitter", "check_optional_ttl", "check_ttl", "xfetch"]

MIN_TTL = 1.0  # seconds: no stored TTL is shorter, whatever the jitter draws


def check_ttl(value: object, what: str = "ttl", *, allow_zero: bool = False) -> float:
    """A finite number of seconds > 0 (or >= 0 when ``allow_zero``), else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{what} must be a finite number {bound}, not {value!r}")
    return seconds


def check_optional_ttl(value: object, what: str = "ttl") -> float | None:
    """None, or a finite number of seconds > 0."""
    return None if value is None else check_ttl(value, what)


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

    ttl: float
    jitter: float
    stale_ttl: float = 0.0
    beta: float = 0.0  # 0 disables early refresh

    def draw_ttl(self) -> float:
        """A TTL in ``[ttl*(1-j), ttl*(1+j)]``, never below one second."""
        if not self.jitter:
            return max(self.ttl, MIN_TTL)
        spread = self.ttl * self.jitter
        return max(self.ttl - spread + 2 * spread * random.random(), MIN_TTL)

    def expiry(self, now: float, delta: float) -> tuple[float, int]:
        """Soft expiry (epoch seconds) and the hard TTL in ms for an entry written ``now``."""
        ttl = self.draw_ttl()
        return now + ttl, max(int((ttl + self.stale_ttl) * 1000), 1000)

    def refresh_early(self, now: float, soft: float, delta: float) -> bool:
        """Whether this hit should trigger an early refresh."""
        return self.beta > 0 and xfetch(now, soft, delta, self.beta, 1.0 - random.random())

    @property
    def hard_ms(self) -> int:
        """The longest an entry of this policy can live, in ms (for tombstones and tags)."""
        return int((self.ttl * (1 + self.jitter) + self.stale_ttl) * 1000) + 1000
