"""Identifier spaces of the simulated sources, laid out so that no two kinds of id can collide.

Each table's key is a prefix plus a fixed number of digits. Clean records count up from 1;
fresh ids for injected dirty copies start at 9 followed by zeros (``E9000000001``), a range
clean counters never reach. Customer references that must be unknown to the CRM use the
``C8xxxxxx`` range, which is neither a clean customer (at most ``C7999999``) nor a dirty CRM
copy (``C9xxxxxx``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.sources.simulator_arrow import prefixed_numbers, scrambled_hex
from ai_data_platform.sources.simulator_vocab import FIRST_NAMES, LAST_NAMES, UNKNOWN_EMAIL_DOMAIN

# table name -> (key prefix, digits)
KEY_FORMATS = {
    "customers": ("C", 7),
    "support_tickets": ("T", 8),
    "subscriptions": ("S", 7),
    "invoices": ("I", 9),
    "payments": ("P", 9),
    "chargebacks": ("CB", 8),
    "events": ("E", 10),
}
MAX_CUSTOMERS = 7_999_999
_UNKNOWN_CUSTOMER_BASE = 8_000_000


def _fresh_base(digits: int) -> int:
    return 9 * 10 ** (digits - 1)


def clean_ids(table_name: str, numbers: np.ndarray) -> pa.StringArray:
    """Keys of clean records, numbered from 1 (``C0000001``, ``E0000000042`` ...)."""
    prefix, digits = KEY_FORMATS[table_name]
    numbers = np.asarray(numbers, dtype=np.int64)
    limit = MAX_CUSTOMERS if table_name in ("customers", "subscriptions") else _fresh_base(digits) - 1
    if numbers.size and (numbers.min() < 1 or numbers.max() > limit):
        raise ValueError(f"clean {table_name} numbers must lie in [1, {limit}]")
    return prefixed_numbers(prefix, numbers, digits)


def fresh_ids(table_name: str, serials: np.ndarray) -> pa.StringArray:
    """Keys of injected dirty copies, disjoint from every clean key (serials count from 1)."""
    prefix, digits = KEY_FORMATS[table_name]
    serials = np.asarray(serials, dtype=np.int64)
    if serials.size and serials.max() >= 10 ** (digits - 1):
        raise ValueError(f"too many dirty {table_name} rows for the fresh id range")
    return prefixed_numbers(prefix, _fresh_base(digits) + serials, digits)


def unknown_customer_ids(serials: np.ndarray) -> pa.StringArray:
    """Customer ids that never appear in any CRM file (``C8000001`` ...)."""
    serials = np.asarray(serials, dtype=np.int64)
    if serials.size and serials.max() >= 1_000_000:
        raise ValueError("too many unknown customer references")
    return prefixed_numbers("C", _UNKNOWN_CUSTOMER_BASE + serials, 7)


def unknown_emails(serials: np.ndarray) -> pa.Array:
    """Plausible email addresses no customer has (their domain is never given to customers)."""
    serials = np.asarray(serials, dtype=np.int64)
    firsts, lasts = FIRST_NAMES["US"], LAST_NAMES["US"]
    first = pa.array([f.lower() for f in firsts]).take(pa.array(serials % len(firsts)))
    last = pa.array([s.lower() for s in lasts]).take(pa.array((serials // len(firsts)) % len(lasts)))
    number = pc.cast(pa.array(serials), pa.string())
    return pc.binary_join_element_wise(first, ".", last, number, "@" + UNKNOWN_EMAIL_DOMAIN, "")


def device_ids(numbers: np.ndarray) -> pa.StringArray:
    """Device fingerprints such as ``dev-3fa94c01b2d7``, one per distinct number."""
    return scrambled_hex("dev-", numbers)


def session_ids(numbers: np.ndarray) -> pa.StringArray:
    """Session ids such as ``ses-91c0d2e4f7a3``, one per distinct number."""
    return scrambled_hex("ses-", numbers)
