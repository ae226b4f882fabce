"""One influence-settings dataclass, embedded by every command; solvers and criteria found through the plugin loader."""

from __future__ import annotations

import dataclasses

import pytest

from unlearn_cli import plugins
from unlearn_cli.influence.settings import CRITERION_CHOICES, SOLVER_CHOICES, InfluenceSettings


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
    assert (InfluenceSettings().damping, PumaConfig().damping) == (1e-3, 1e-2)


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
