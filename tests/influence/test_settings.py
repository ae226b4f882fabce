"""One influence-settings dataclass, embedded by every command; solvers and criteria found through the plugin loader."""

from __future__ import annotations

import dataclasses

import pytest

from unlearn_cli import plugins
from unlearn_cli.influence.settings import CRITERION_CHOICES, SOLVER_CHOICES, InfluenceSettings, PatchSettings


def test_option_choices_are_exactly_the_registered_plugins_in_listing_order():
    from unlearn_cli.influence.criteria import CRITERIA
    from unlearn_cli.influence.solvers.base import SOLVERS

    assert SOLVERS == SOLVER_CHOICES
    assert tuple(CRITERIA) == CRITERION_CHOICES
    assert set(plugins.names("solvers")) == set(SOLVER_CHOICES) - {"auto"}


def test_every_solver_plugin_is_a_solver_named_after_its_entry_point():
    from unlearn_cli.influence.solvers.base import Solver

    for name, cls in plugins.load_all("solvers").items():
        assert issubclass(cls, Solver) and cls.name == name


def test_every_command_embeds_the_settings_and_only_puma_changes_a_default():
    from unlearn_cli.diagnostics.calibration import CalibrationSettings
    from unlearn_cli.diagnostics.rankers import RankSettings
    from unlearn_cli.methods.puma import PUMA_DAMPING, PumaConfig

    base = InfluenceSettings()
    for cls in (PumaConfig, RankSettings, CalibrationSettings):
        assert issubclass(cls, InfluenceSettings)
        got = cls()
        for f in dataclasses.fields(InfluenceSettings):
            expected = PUMA_DAMPING if (cls is PumaConfig and f.name == "damping") else getattr(base, f.name)
            assert getattr(got, f.name) == expected, (cls.__name__, f.name)
    assert (InfluenceSettings().damping, PumaConfig().damping) == (1e-3, 0.1)


def test_reports_list_each_command_s_own_options_in_their_order():
    from unlearn_cli.diagnostics.calibration import CalibrationSettings
    from unlearn_cli.diagnostics.rankers import RankSettings

    assert list(RankSettings().reported()) == ["criterion", "k", "solver", "damping", "cache", "seed"]
    assert list(CalibrationSettings().reported()) == [
        "holdout", "k", "eta", "eta_min", "eta_max", "eta_grid", "baseline", "solver", "damping",
        "reweight_sample", "cache", "seed"]


@pytest.mark.parametrize("solver, extra", [
    ("exact", set()), ("cg", {"cg_tol", "cg_maxiter"}), ("kfac", {"fisher_samples"}),
    ("ekfac", {"fisher_samples", "ekfac_sample"}),
    ("lissa", {"lissa_depth", "lissa_scale", "lissa_batch", "lissa_repeats"}),
])
def test_curvature_cache_keys_keep_their_names(solver, extra):
    from unlearn_cli.influence.solvers.base import CurvatureSettings

    key = CurvatureSettings(solver=solver).key(n_params=10)
    assert set(key) == {"solver", "curvature", "damping", "weight_decay", "sample", "seed"} | extra


def test_unknown_solver_lists_every_choice():
    from unlearn_cli.errors import BadInput
    from unlearn_cli.influence.solvers.base import check_solver

    with pytest.raises(BadInput, match="unknown solver 'magic'; choose one of: auto, exact, cg, lissa, kfac, ekfac"):
        check_solver("magic")


def test_ranges_are_declared_once_and_redefaults_keep_them():
    from unlearn_cli.diagnostics.calibration import CalibrationSettings
    from unlearn_cli.methods.puma import PumaConfig

    base = InfluenceSettings.__dataclass_fields__
    for cls in (PumaConfig, CalibrationSettings):
        for name in ("damping", "lissa_depth", "fisher_samples", "cg_tol"):
            assert cls.__dataclass_fields__[name].metadata["range"] == base[name].metadata["range"], (cls, name)


def test_checks_across_fields_stay_in_validate():
    from unlearn_cli.errors import BadInput
    from unlearn_cli.methods.puma import PumaConfig
    from unlearn_cli.options import parse_options

    with pytest.raises(BadInput, match="^need eta_min <= eta_max, got 10 > 1$"):
        parse_options(PumaConfig, {"eta_min": "10", "eta_max": "1"})
    with pytest.raises(BadInput, match="lambda_l2' must be > 0 for lambda_solver=exact"):
        parse_options(PumaConfig, {"lambda_l2": "0"})
    assert parse_options(PumaConfig, {"lambda_l2": "0", "lambda_solver": "slsqp"}).lambda_l2 == 0.0
    assert parse_options(PumaConfig, {"eta_min": "0.5", "eta_max": "0.5"}).eta_min == 0.5


def test_values_out_of_range_are_refused_however_the_settings_are_made():
    from unlearn_cli.errors import BadInput

    for bad in ({"damping": float("nan")}, {"eta_grid": 10**9}, {"lissa_depth": -1}, {"fisher_samples": -1}):
        with pytest.raises(BadInput):
            (PatchSettings if "eta_grid" in bad else InfluenceSettings)(**bad)
