"""For data scientists: ``from ai_data_platform.datasets import load_dataset``.

``load_dataset("churn", "2026-10-01")`` returns the immutable training-set version as a pandas
DataFrame after verifying its content hash; see ``ai_data_platform.ml.datasets`` for the rest.
"""

from ai_data_platform.ml.datasets import (  # noqa: F401
    DatasetError,
    DatasetNotFound,
    diff_versions,
    list_datasets,
    load_dataset,
    read_manifest,
)

__all__ = ["DatasetError", "DatasetNotFound", "diff_versions", "list_datasets", "load_dataset", "read_manifest"]
