"""ai_data_platform: trustworthy data for ML models, built on Dagster and DuckDB."""

__version__ = "0.1.0"
