"""Resources, chosen per environment in this one place.

``local`` (the embedded default) and ``prod`` differ only in where things live and which
secrets are mandatory; asset code asks for ``warehouse``, ``landing``, ``pii`` and
``regional_stores`` and never builds a path or a connection itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from ai_data_platform import settings, warehouse
from ai_data_platform.governance.stores import PersonalData, RegionalStores
from ai_data_platform.sources.landing import LandingZones


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse: waits for the single-writer lock and creates the layer schemas."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = warehouse.connect(self.database)
        try:
            warehouse.ensure_schemas(con)
            yield con
        finally:
            con.close()


class LandingResource(dg.ConfigurableResource):
    """Where the daily source exports land: the shared zone and each region's zone for the tables
    holding personal data (``ADP_REGION_LANDING_<REGION>``, ``settings.region_landing_paths``);
    see ``sources/landing.LandingZones``."""

    data_dir: str
    shared: str
    regional: dict[str, str]

    @property
    def zones(self) -> LandingZones:
        return LandingZones(Path(self.data_dir), Path(self.shared), {r: Path(p) for r, p in self.regional.items()})


class PiiResource(dg.ConfigurableResource):
    """The HMAC key that pseudonymizes email and phone join keys (``ADP_PII_HMAC_KEY``).

    Configured as ``dg.EnvVar("ADP_PII_HMAC_KEY")`` (see :func:`pii_key_config`): Dagster resolves
    it in the run's process and its UI and run config show the variable's name, never the key.
    Read the key through :attr:`key`.
    """

    hmac_key: str

    @property
    def key(self) -> str:
        """The key itself. Inside a run Dagster has resolved the variable; outside one (a script, a
        test) the field still holds the variable's name, so the key is read from the environment."""
        if isinstance(self.hmac_key, dg.EnvVar):
            return settings.pii_hmac_key()
        return self.hmac_key


def pii_key_config() -> str:
    """The PII key as resource config: ``dg.EnvVar("ADP_PII_HMAC_KEY")`` when the variable is set,
    after checking the key (in prod a missing or weak key is an InputError naming the variable);
    outside prod with the variable unset, the public demo key itself."""
    settings.pii_hmac_key()
    return dg.EnvVar(settings.PII_KEY_VAR) if settings.pii_key_is_set() else settings.DEMO_PII_HMAC_KEY


class RegionalStoresResource(dg.ConfigurableResource):
    """Each region's personal data store ({region: DuckDB file}); see ``governance/stores.py``.
    Configured by ``ADP_REGION_STORE_<REGION>`` (``settings.region_store_paths``)."""

    paths: dict[str, str]

    @property
    def stores(self) -> RegionalStores:
        return RegionalStores({r: Path(p) for r, p in self.paths.items()})

    def personal_data(self, pii: PiiResource) -> PersonalData:
        return PersonalData(pii.key, self.stores)


def build_resources(paths: settings.Paths | None = None) -> dict[str, object]:
    paths = paths or settings.paths()
    return {
        "warehouse": WarehouseResource(database=str(paths.warehouse)),
        "landing": LandingResource(
            data_dir=str(paths.root),
            shared=str(paths.landing),
            regional={r: str(p) for r, p in settings.region_landing_paths(paths).items()},
        ),
        "pii": PiiResource(hmac_key=pii_key_config()),
        "regional_stores": RegionalStoresResource(paths={r: str(p) for r, p in settings.region_store_paths(paths).items()}),
    }


def resources_for_environment() -> dict[str, object]:
    """The resources for ``ADP_ENV`` (``local`` default, or ``prod``)."""
    settings.check_environment()  # ADP_ENV, and in prod the PII key
    return build_resources(settings.paths())
