"""Vocabularies and business constants of the simulated SaaS: countries, names, plans, pages.

Pure data, no logic. Every string here is ASCII and free of quotes, backslashes and control
characters except where noted (ticket bodies deliberately contain commas and double quotes so
the CSV writer's quoting is exercised).
"""

from __future__ import annotations

from ai_data_platform.sources.contracts import CURRENCIES, PLANS, REGIONS, SEGMENTS

# --- geography -------------------------------------------------------------------------------

COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "IE", "SE", "PL", "US", "AU", "JP", "SG", "IN", "NZ")

REGION_SHARE = {"EU": 0.45, "US": 0.35, "APAC": 0.20}

COUNTRY_SHARE_IN_REGION = {
    "EU": {"DE": 0.25, "FR": 0.20, "NL": 0.10, "ES": 0.12, "IT": 0.12, "IE": 0.05, "SE": 0.08, "PL": 0.08},
    "US": {"US": 1.0},
    "APAC": {"AU": 0.30, "JP": 0.25, "SG": 0.15, "IN": 0.20, "NZ": 0.10},
}

# The contract accepts six currencies only, so countries whose own currency is not among them
# are billed in the nearest accepted one (SE, PL -> EUR; IN -> USD; NZ -> AUD).
COUNTRY_CURRENCY = {
    "DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR", "IE": "EUR", "SE": "EUR",
    "PL": "EUR", "US": "USD", "AU": "AUD", "JP": "JPY", "SG": "SGD", "IN": "USD", "NZ": "AUD",
}

# E.164 mobile numbers: country calling code, national mobile prefix, random digits after it.
PHONE_PLAN = {
    "DE": ("49", "151", 8), "FR": ("33", "6", 8), "NL": ("31", "6", 8), "ES": ("34", "6", 8),
    "IT": ("39", "3", 9), "IE": ("353", "8", 8), "SE": ("46", "7", 8), "PL": ("48", "5", 8),
    "US": ("1", "2", 9), "AU": ("61", "4", 8), "JP": ("81", "90", 8), "SG": ("65", "8", 7),
    "IN": ("91", "9", 9), "NZ": ("64", "2", 8),
}
PHONE_MISSING_SHARE = 0.08

# Money: how many units of a currency buy what one EUR buys, and how amounts are rounded.
CURRENCY_SCALE = {"EUR": 1.0, "USD": 1.0, "GBP": 0.85, "AUD": 1.5, "JPY": 150.0, "SGD": 1.35}
CURRENCY_DECIMALS = {"EUR": 2, "USD": 2, "GBP": 2, "AUD": 2, "JPY": 0, "SGD": 2}

# --- customers -------------------------------------------------------------------------------

SEGMENT_SHARE = {"consumer": 0.70, "smb": 0.24, "enterprise": 0.06}

PLAN_SHARE_BY_SEGMENT = {
    "consumer": {"basic": 0.70, "pro": 0.27, "business": 0.03},
    "smb": {"basic": 0.30, "pro": 0.50, "business": 0.20},
    "enterprise": {"basic": 0.05, "pro": 0.35, "business": 0.60},
}
PLAN_PRICE_EUR = {"basic": 19.0, "pro": 49.0, "business": 199.0}
PLAN_DISCOUNTS = (1.0, 0.9, 0.8)
PLAN_DISCOUNT_SHARE = (0.70, 0.20, 0.10)
MARKETING_CONSENT_SHARE = 0.40

FIRST_NAMES = {
    "EU": (
        "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Paul", "Emma", "Louis", "Lea", "Hugo",
        "Lucia", "Mateo", "Giulia", "Marco", "Sanne", "Daan", "Aoife", "Conor", "Elsa", "Oskar",
        "Zofia", "Jakub", "Clara", "Felix", "Ines", "Pablo", "Chiara", "Luca", "Femke", "Sven",
    ),
    "US": (
        "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
        "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
        "Sarah", "Chris", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty",
        "Mark", "Ashley", "Steven", "Emily",
    ),
    "APAC": (
        "Olivia", "Jack", "Charlotte", "Noah", "Haruto", "Yui", "Sota", "Hina", "Wei", "Mei",
        "Jun", "Xin", "Aarav", "Ananya", "Vivaan", "Diya", "Arjun", "Priya", "Liam", "Isla",
        "Ren", "Sakura", "Ethan", "Chloe", "Ravi", "Kavya", "Oliver", "Mia", "Kai", "Aria",
    ),
}
LAST_NAMES = {
    "EU": (
        "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Martin", "Bernard", "Dubois",
        "Moreau", "Garcia", "Fernandez", "Lopez", "Rossi", "Russo", "Bianchi", "DeJong", "Bakker",
        "Visser", "Murphy", "Kelly", "OBrien", "Andersson", "Johansson", "Nilsson", "Nowak",
        "Kowalski", "Wojcik", "Becker", "Hoffmann", "Romano",
    ),
    "US": (
        "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
        "Taylor", "Thomas", "Moore", "Jackson", "White", "Harris", "Thompson", "Clark", "Lewis",
        "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker",
        "Adams", "Nelson", "Hill",
    ),
    "APAC": (
        "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Nakamura", "Kobayashi",
        "Tan", "Lim", "Lee", "Ng", "Wong", "Chen", "Sharma", "Patel", "Singh", "Kumar", "Gupta",
        "Iyer", "Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Walker", "Ngata",
        "Parata", "Kaur",
    ),
}
EMAIL_DOMAINS = {
    "EU": ("gmail.com", "outlook.com", "gmx.de", "web.de", "orange.fr", "libero.it", "proton.me"),
    "US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com", "hotmail.com"),
    "APAC": ("gmail.com", "yahoo.co.jp", "outlook.com", "bigpond.com", "icloud.com", "xtra.co.nz"),
}
# Tickets from people who are not customers use a domain no customer has.
UNKNOWN_EMAIL_DOMAIN = "example.net"

# --- product behaviour -----------------------------------------------------------------------

EVENT_TYPE_SHARE = {"login": 0.22, "page_view": 0.45, "feature_use": 0.23, "card_transaction": 0.10}

PAGES = (
    "/dashboard", "/cards", "/transactions", "/analytics", "/settings", "/billing", "/pricing",
    "/support", "/team", "/integrations", "/account/cancel",
)
PAGE_SHARE_ENGAGED = (0.28, 0.15, 0.20, 0.12, 0.06, 0.04, 0.02, 0.03, 0.05, 0.045, 0.005)
PAGE_SHARE_DISENGAGING = (0.18, 0.08, 0.10, 0.04, 0.08, 0.14, 0.12, 0.08, 0.02, 0.01, 0.15)

FEATURES = (
    "export_report", "budget_alerts", "virtual_card", "team_invite", "api_keys",
    "spend_analytics", "receipt_scan", "multi_currency",
)
FEATURE_SHARE = (0.18, 0.14, 0.16, 0.08, 0.06, 0.18, 0.12, 0.08)

MERCHANT_CATEGORIES = (
    "grocery", "restaurants", "travel", "fuel", "electronics", "digital_goods", "fashion",
    "utilities", "entertainment", "gift_cards",
)
MERCHANT_SHARE_LEGIT = (0.22, 0.18, 0.08, 0.10, 0.06, 0.08, 0.10, 0.10, 0.07, 0.01)
MERCHANT_SHARE_FRAUD = (0.02, 0.03, 0.12, 0.01, 0.30, 0.22, 0.08, 0.00, 0.04, 0.18)

# --- support ---------------------------------------------------------------------------------

TICKET_CATEGORIES = ("billing", "technical", "account", "cancellation")
TICKET_CATEGORY_SHARE_NORMAL = (0.25, 0.45, 0.25, 0.05)
TICKET_CATEGORY_SHARE_PAYMENT_TROUBLE = (0.70, 0.10, 0.15, 0.05)
TICKET_CATEGORY_SHARE_DISENGAGING = (0.25, 0.15, 0.10, 0.50)
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_CHANNEL_SHARE = (0.50, 0.35, 0.15)
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_PRIORITY_SHARE = (0.20, 0.55, 0.20, 0.05)
TICKET_STATUSES = ("open", "pending", "resolved")
TICKET_STATUS_SHARE = (0.70, 0.20, 0.10)
TICKET_BODY_MISSING_SHARE = 0.05

# Free text, one template list per category (same order as TICKET_CATEGORIES).
TICKET_BODIES = (
    (
        "Hi, I was charged twice this month, can you check my invoice?",
        "My card payment failed, but the money left my account. Please advise.",
        'The invoice says "open" although I paid it, what is going on?',
        "Can I get a refund for last month, I did not use the product.",
        "Please update the billing address on my invoices, thanks.",
    ),
    (
        "The export button does nothing, I tried Chrome and Firefox.",
        'Dashboard shows "something went wrong" since this morning.',
        "Virtual card creation fails with an error, please help.",
        "API keys page keeps loading forever, any ideas?",
        "Receipt scan reads the wrong amount, e.g. 12,50 becomes 1250.",
    ),
    (
        "How do I add a colleague to my team account?",
        "I need to change the email on my account, how do I do that?",
        "Please enable two-factor authentication for my login.",
        'I cannot find the "team" settings, where did they move?',
        "Can you merge my two accounts, one for work and one private?",
    ),
    (
        "I want to cancel my subscription, please confirm.",
        "Too expensive for what I use, how do I cancel?",
        'Please cancel, we moved to another tool. "Thanks" for nothing.',
        "We are not using this anymore, stop billing me.",
        "Cancel at the end of the period, and delete my data, please.",
    ),
)

# Positions of contract vocabularies, so arrays of small ints can index them.
REGION_INDEX = {r: i for i, r in enumerate(REGIONS)}
SEGMENT_INDEX = {s: i for i, s in enumerate(SEGMENTS)}
PLAN_INDEX = {p: i for i, p in enumerate(PLANS)}
CURRENCY_INDEX = {c: i for i, c in enumerate(CURRENCIES)}
COUNTRY_INDEX = {c: i for i, c in enumerate(COUNTRIES)}
