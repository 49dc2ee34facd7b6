"""The blocking residency check on every table of the regional stores (Dagster wiring around
``governance/residency.py``, which also searches the landing zones, ``residency_landing.py``)."""

import dagster as dg

from ai_data_platform.governance import residency
from ai_data_platform.governance.stores import PERSONAL_TABLES
from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.resources import LandingResource, RegionalStoresResource, WarehouseResource
from ai_data_platform.sources.assets import WAREHOUSE_POOL, personal_key


@dg.multi_asset_check(
    name="residency",
    specs=[
        dg.AssetCheckSpec(
            "residency",
            asset=personal_key(table),
            blocking=True,
            partitions_def=daily_partitions,  # judged for the run's partitions; it searches every store whole
            description=(
                f"Searched in the data: every row of {table.name} in a region's store belongs to a subject of that "
                "region, no name, email or phone found in the stores appears in any text column of the main "
                "warehouse (its partitioned tables: in the run's partitions), no other table of a store holds "
                "identifiers of another region's subjects, and no landing file (of the run's days) holds names, emails "
                "or phones outside their subjects' regional landing zone."
            ),
        )
        for table in PERSONAL_TABLES
    ],
    can_subset=True,
    pool=WAREHOUSE_POOL,
)
def residency_check(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    regional_stores: RegionalStoresResource,
    landing: LandingResource,
):
    stores = regional_stores.stores
    with warehouse.get_connection() as con, stores.attached(con, read_only=True) as aliases:
        found = residency.violations(con, aliases, stores.paths, warehouse.database, days_in(context), landing.zones)
    selected = context.selected_asset_check_keys
    for table in PERSONAL_TABLES:
        key = dg.AssetCheckKey(personal_key(table), "residency")
        if key not in selected:
            continue
        mine = [v for v in found if v.personal_table == table.name]
        message = "; ".join(v.describe() for v in mine) or (
            f"{table.name}: every row is in its subjects' region store; none of its identifiers found outside it "
            f"(searched the {len(stores.paths)} regional stores, the main warehouse and every landing zone)"
        )
        yield dg.AssetCheckResult(
            asset_key=personal_key(table),
            check_name="residency",
            passed=not mine,
            severity=dg.AssetCheckSeverity.ERROR,
            description=message[:2000],
            metadata={
                "message": message,
                "violations": [
                    {"store": v.store, "path": v.path, "table": v.table, "rows": v.rows, "subjects_region": v.subjects_region}
                    for v in mine
                ],
                "stores": stores.describe(),
            },
        )
