"""How much dirt a partition may carry before its gate fails (one place to tune).

A rate alone is too strict for small partitions: with 0.5% routine dirt, a 250-row partition
now and then carries 5 bad rows (2%) by chance. So a partition fails only when its bad rows
exceed the tolerated rate by more than binomial noise: ``rate·n + 3·sqrt(n·rate·(1-rate)) + 2``
rows. For large partitions that is the rate itself (110k rows at 5%: 5.2%).
"""

import math

# Fraction of a staging partition's rows that may fail any one value rule (and be quarantined).
MAX_RULE_FAILURE_RATE = 0.05
# Fraction of rows that may reference a customer unknown to the CRM as of that day.
MAX_UNKNOWN_CUSTOMER_RATE = 0.02
# Bad rows always tolerated on top of the rate and its noise band.
MIN_TOLERATED_ROWS = 2


def tolerated_rows(rows: int, rate: float) -> float:
    return rate * rows + 3 * math.sqrt(rows * rate * (1 - rate)) + MIN_TOLERATED_ROWS


def allowed_rate(rows: int, rate: float) -> float:
    """The failure rate tolerated in a partition of ``rows`` rows."""
    if rows <= 0:
        return rate
    return min(1.0, tolerated_rows(rows, rate) / rows)


def exceeds(bad: int, rows: int, rate: float) -> bool:
    return rows > 0 and bad > tolerated_rows(rows, rate)
