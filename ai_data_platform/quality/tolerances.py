"""How much dirt a partition may carry before its gate fails (one place to tune)."""

# Fraction of a staging partition's rows that may fail any one value rule (and be quarantined).
MAX_RULE_FAILURE_RATE = 0.05
# Fraction of rows that may reference a customer unknown to the CRM as of that day.
MAX_UNKNOWN_CUSTOMER_RATE = 0.02
