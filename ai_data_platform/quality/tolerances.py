"""How much dirt a partition may carry before its gate fails (one place to tune).

A rate alone is too strict for small partitions (one bad row in ten is 10%), so every tolerance
also allows a few rows outright: a partition fails when its bad rows exceed both the rate and
``MIN_TOLERATED_ROWS``.
"""

# Fraction of a staging partition's rows that may fail any one value rule (and be quarantined).
MAX_RULE_FAILURE_RATE = 0.05
# Fraction of rows that may reference a customer unknown to the CRM as of that day.
MAX_UNKNOWN_CUSTOMER_RATE = 0.02
# Bad rows always tolerated in a partition, whatever its size.
MIN_TOLERATED_ROWS = 3


def allowed_rate(rows: int, rate: float) -> float:
    """The failure rate tolerated in a partition of ``rows`` rows."""
    if rows <= 0:
        return rate
    return min(1.0, max(rate, MIN_TOLERATED_ROWS / rows))


def exceeds(bad: int, rows: int, rate: float) -> bool:
    return rows > 0 and bad / rows > allowed_rate(rows, rate)
