"""ai_data_platform: trustworthy data for ML models, built on Dagster and DuckDB."""

import warnings

# We deliberately use Dagster's partitioned asset checks (preview in 1.13) and backfill policies
# (beta); their notices would otherwise repeat on every import.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")

__version__ = "0.1.0"
