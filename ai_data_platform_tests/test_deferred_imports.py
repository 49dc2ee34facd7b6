"""Deferred imports: nothing runs until a read, then the real module, once, for every importer."""

import subprocess
import sys
import textwrap
import threading

import pytest

from ai_data_platform.quality import deferred_imports
from ai_data_platform_tests.waiting import bound


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``adp_fake_pkg`` whose submodule ``heavy`` counts its executions in a file."""
    root = tmp_path / "adp_fake_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    runs = tmp_path / "runs.txt"
    (root / "heavy.py").write_text(
        textwrap.dedent(
            f"""
            import time
            with open({str(runs)!r}, "a") as f:
                f.write("x")
            time.sleep(0.05)  # widen the window for racing first reads
            def norm(x):
                return 2 * x
            VALUE = 41
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield runs
    for name in [n for n in sys.modules if n.startswith("adp_fake_pkg")]:
        del sys.modules[name]


def test_a_deferred_module_runs_on_first_read_only_and_every_import_form_sees_the_real_one(package):
    assert deferred_imports.defer("adp_fake_pkg.heavy") == ["adp_fake_pkg.heavy"]
    from adp_fake_pkg import heavy  # what GX's `from scipy import stats` does

    assert not package.exists(), "importing the name must not execute the module"
    assert isinstance(heavy, deferred_imports.DeferredModule) and not heavy.loaded
    assert heavy.norm(3) == 6 and heavy.loaded
    from adp_fake_pkg.heavy import VALUE  # a later `from X import name`

    import adp_fake_pkg.heavy as again

    assert VALUE == 41 and again.VALUE == 41
    assert type(sys.modules["adp_fake_pkg.heavy"]) is not deferred_imports.DeferredModule
    assert package.read_text() == "x", "the real module must execute exactly once"


def test_racing_first_reads_load_the_module_once(package):
    deferred_imports.defer("adp_fake_pkg.heavy")
    from adp_fake_pkg import heavy

    seen, errors = [], []

    def read():
        try:
            seen.append(heavy.VALUE)
        except Exception as error:  # noqa: BLE001 - a half-initialised module would show here
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and seen == [41] * 8
    assert package.read_text() == "x"


def test_imported_or_missing_modules_are_left_alone(package):
    import json

    assert deferred_imports.defer("json", "adp_fake_pkg.not_there", "no_such_top_level_module") == []
    assert sys.modules["json"] is json
    assert "adp_fake_pkg.not_there" not in sys.modules and "no_such_top_level_module" not in sys.modules
    with pytest.raises(ImportError):
        import no_such_top_level_module  # noqa: F401


def test_a_gx_validation_leaves_scipy_stats_unimported_and_it_still_works_when_read():
    """In a fresh process, as in a Dagster run: GX validates without importing scipy.stats, and a
    later user of scipy.stats (scikit-learn, a KS test) gets the real module."""
    code = textwrap.dedent(
        """
        import sys
        import pandas as pd
        from ai_data_platform.quality.gx_runner import ExpectationSpec, SuiteSpec, validate_dataframe
        suite = SuiteSpec("t", (ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "a", "min_value": 0}),))
        report = validate_dataframe(pd.DataFrame({"a": [1, 2, -1]}), suite)
        assert not report.success and report.outcomes[0].unexpected_count == 1
        stats = sys.modules["scipy.stats"]
        assert type(stats).__name__ == "DeferredModule" and not stats.loaded, type(stats)
        from scipy import stats as s
        assert round(s.norm.cdf(0.0), 6) == 0.5 and stats.loaded
        from sklearn.ensemble import HistGradientBoostingClassifier  # imports scipy.stats itself
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=bound(600))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
