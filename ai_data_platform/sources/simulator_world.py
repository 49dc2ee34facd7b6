"""The simulated customer base: who the customers are, when they signed up, what they pay.

``build_population`` draws every static attribute of every customer once, vectorized: identity
(name, email, phone, country), commercial terms (segment, plan, MRR, currency), behavioural
traits (activity level, usual card spend, number of devices, payment reliability) and the
history before the window (signup time, cancellations that happened before the first day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.sources.contracts import CURRENCIES, PLANS, REGIONS, SEGMENTS
from ai_data_platform.sources.simulator_arrow import pick
from ai_data_platform.sources.simulator_clock import NEVER, SECONDS_PER_DAY, Window, stream
from ai_data_platform.sources.simulator_ids import clean_ids
from ai_data_platform.sources import simulator_vocab as vocab

HISTORY_DAYS = 730  # signups spread over about two years before the window's end
PRE_WINDOW_MONTHLY_CHURN = 0.025
PLAN_CHURN_FACTOR = np.array([1.3, 1.0, 0.6])  # basic, pro, business


@dataclass
class Population:
    """Static attributes of all customers; row ``i`` is customer number ``i + 1``."""

    number: np.ndarray  # int64, 1..n
    customer_id: pa.StringArray
    region: np.ndarray  # index into contracts.REGIONS
    country: np.ndarray  # index into vocab.COUNTRIES
    currency: np.ndarray  # index into contracts.CURRENCIES
    segment: np.ndarray  # index into contracts.SEGMENTS (as at the window's start)
    name: pa.Array
    email: pa.Array
    phone_national: np.ndarray  # int64 national mobile number, 0 = no phone on file
    marketing_consent: np.ndarray  # bool, as at the window's start
    signup_at: np.ndarray  # epoch seconds
    profile_updated_at: np.ndarray  # last CRM change before the window (or the signup)
    first_crm_day: np.ndarray  # window day of the customer's first CRM row
    plan: np.ndarray  # index into contracts.PLANS
    mrr: np.ndarray  # float64, in the customer's currency
    activity: np.ndarray  # mean-1 multiplier of the daily event rate
    churn_propensity: np.ndarray  # multiplier of the daily disengagement hazard
    usual_amount: np.ndarray  # typical card transaction, in the customer's currency
    devices: np.ndarray  # 1 or 2 usual devices
    unreliable_card: np.ndarray  # bool: payments fail far more often
    cancelled_before_window_at: np.ndarray  # epoch seconds or NEVER

    @property
    def size(self) -> int:
        return int(self.number.size)


def _categorical(rng: np.random.Generator, shares: dict[str, float], size: int) -> np.ndarray:
    p = np.array(list(shares.values()), dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _regions_and_countries(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    region_names = list(vocab.REGION_SHARE)
    region_pos = _categorical(rng, vocab.REGION_SHARE, n)
    region = np.array([REGIONS.index(r) for r in region_names])[region_pos]
    country = np.empty(n, dtype=np.int64)
    for r_pos, r_name in enumerate(region_names):
        rows = np.flatnonzero(region_pos == r_pos)
        shares = vocab.COUNTRY_SHARE_IN_REGION[r_name]
        codes = np.array([vocab.COUNTRY_INDEX[c] for c in shares])
        country[rows] = codes[_categorical(rng, shares, rows.size)]
    return region, country


def _names_and_emails(rng, numbers, region) -> tuple[pa.Array, pa.Array]:
    """Region-typical full names and unique lowercase emails (the local part ends in the number)."""
    n = numbers.size
    first_all, last_all, domain_all, order = [], [], [], []
    for r_index, r_name in enumerate(REGIONS):
        rows = np.flatnonzero(region == r_index)
        firsts, lasts, domains = vocab.FIRST_NAMES[r_name], vocab.LAST_NAMES[r_name], vocab.EMAIL_DOMAINS[r_name]
        first_all.append(pick(firsts, rng.integers(0, len(firsts), rows.size)))
        last_all.append(pick(lasts, rng.integers(0, len(lasts), rows.size)))
        domain_all.append(pick(domains, rng.integers(0, len(domains), rows.size)))
        order.append(rows)
    back = np.argsort(np.concatenate(order), kind="stable")
    first = pa.concat_arrays(first_all).take(pa.array(back))
    last = pa.concat_arrays(last_all).take(pa.array(back))
    domain = pa.concat_arrays(domain_all).take(pa.array(back))
    name = pc.binary_join_element_wise(first, last, " ")
    lower_first, lower_last = pc.utf8_lower(first), pc.utf8_lower(last)
    initial = pc.utf8_slice_codeunits(lower_first, 0, 1)
    number = pc.cast(pa.array(numbers), pa.string())
    style = rng.integers(0, 3, n)
    local = pc.if_else(
        pa.array(style == 0),
        pc.binary_join_element_wise(lower_first, ".", lower_last, number, ""),
        pc.if_else(
            pa.array(style == 1),
            pc.binary_join_element_wise(lower_first, "_", lower_last, number, ""),
            pc.binary_join_element_wise(initial, lower_last, number, ""),
        ),
    )
    email = pc.binary_join_element_wise(local, domain, "@")
    return name, email


def phone_numbers(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """A random national mobile number (without country code) per customer, as int64."""
    national = np.zeros(country.size, dtype=np.int64)
    for c_index, c_code in enumerate(vocab.COUNTRIES):
        rows = np.flatnonzero(country == c_index)
        _, prefix, digits = vocab.PHONE_PLAN[c_code]
        national[rows] = int(prefix) * 10**digits + rng.integers(0, 10**digits, rows.size)
    return national


def _signup_times(rng: np.random.Generator, window: Window, n: int) -> np.ndarray:
    """Signups over ~2 years before the end, growing over time (density rising towards the end)."""
    span_days = max(HISTORY_DAYS, window.days + 60)
    span = span_days * SECONDS_PER_DAY
    u = rng.random(n)
    growth = np.sqrt(rng.random(n))
    position = np.where(rng.random(n) < 0.5, u, growth)
    return window.end_s - span + (position * span).astype(np.int64)


def _plans_and_mrr(rng, segment, currency) -> tuple[np.ndarray, np.ndarray]:
    n = segment.size
    plan = np.empty(n, dtype=np.int64)
    for s_index, s_name in enumerate(SEGMENTS):
        rows = np.flatnonzero(segment == s_index)
        shares = vocab.PLAN_SHARE_BY_SEGMENT[s_name]
        plan[rows] = np.array([PLANS.index(p) for p in shares])[_categorical(rng, shares, rows.size)]
    price = np.array([vocab.PLAN_PRICE_EUR[p] for p in PLANS])[plan]
    discount = np.array(vocab.PLAN_DISCOUNTS)[
        rng.choice(len(vocab.PLAN_DISCOUNTS), n, p=vocab.PLAN_DISCOUNT_SHARE)
    ]
    return plan, round_money(price * discount * currency_scale(currency), currency)


def currency_scale(currency: np.ndarray) -> np.ndarray:
    return np.array([vocab.CURRENCY_SCALE[c] for c in CURRENCIES])[currency]


def round_money(amount: np.ndarray, currency: np.ndarray) -> np.ndarray:
    """Amounts rounded to their currency's minor unit (JPY has none)."""
    decimals = np.array([vocab.CURRENCY_DECIMALS[c] for c in CURRENCIES])[currency]
    factor = 10.0**decimals
    return np.maximum(np.round(amount * factor) / factor, 1.0 / factor)


def _cancellations_before_window(rng, window, signup_at, plan, propensity) -> np.ndarray:
    """When customers who left before the first day cancelled (NEVER for the others)."""
    tenure = np.maximum(window.start_s - signup_at, 0) / (30.0 * SECONDS_PER_DAY)
    hazard = PRE_WINDOW_MONTHLY_CHURN * PLAN_CHURN_FACTOR[plan] * propensity
    churned = (signup_at + 2 * SECONDS_PER_DAY < window.start_s) & (
        rng.random(signup_at.size) < 1 - np.exp(-hazard * tenure)
    )
    earliest = signup_at + SECONDS_PER_DAY
    at = earliest + (rng.random(signup_at.size) * np.maximum(window.start_s - earliest, 1)).astype(np.int64)
    return np.where(churned, np.minimum(at, window.start_s - 1), NEVER)


def build_population(customers: int, window: Window, seed: int) -> Population:
    """Draw every customer's static attributes (deterministic in ``seed`` and the window)."""
    rng = stream(seed, "population")
    n = customers
    number = np.arange(1, n + 1, dtype=np.int64)
    region, country = _regions_and_countries(rng, n)
    currency = np.array([CURRENCIES.index(vocab.COUNTRY_CURRENCY[c]) for c in vocab.COUNTRIES])[country]
    segment = _categorical(rng, vocab.SEGMENT_SHARE, n)
    name, email = _names_and_emails(rng, number, region)
    phone = np.where(rng.random(n) < vocab.PHONE_MISSING_SHARE, 0, phone_numbers(rng, country))
    signup_at = _signup_times(rng, window, n)
    before_window = signup_at < window.start_s
    edited = before_window & (rng.random(n) < 0.3)
    profile_updated_at = np.where(
        edited, signup_at + (rng.random(n) * (window.start_s - signup_at)).astype(np.int64), signup_at
    )
    first_crm_day = np.maximum(window.day_index(signup_at), 0)
    plan, mrr = _plans_and_mrr(rng, segment, currency)
    activity = rng.lognormal(mean=-0.32, sigma=0.8, size=n)  # mean ~1
    # Low-activity customers are likelier to drift away.
    churn_propensity = np.clip(1.7 - 0.6 * activity, 0.5, 1.7)
    usual_amount = rng.lognormal(mean=np.log(35.0), sigma=0.6, size=n) * currency_scale(currency)
    devices = 1 + (rng.random(n) < 0.4)
    unreliable_card = rng.random(n) < 0.12
    cancelled = _cancellations_before_window(rng, window, signup_at, plan, churn_propensity)
    return Population(
        number=number,
        customer_id=clean_ids("customers", number),
        region=region,
        country=country,
        currency=currency,
        segment=segment,
        name=name,
        email=email,
        phone_national=phone,
        marketing_consent=rng.random(n) < vocab.MARKETING_CONSENT_SHARE,
        signup_at=signup_at,
        profile_updated_at=profile_updated_at,
        first_crm_day=first_crm_day,
        plan=plan,
        mrr=mrr,
        activity=activity,
        churn_propensity=churn_propensity,
        usual_amount=usual_amount,
        devices=devices.astype(np.int64),
        unreliable_card=unreliable_card,
        cancelled_before_window_at=cancelled,
    )
