"""The tidy runs table: both schemas, conventions, exclusions with reasons, budget grouping, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.options import ColumnMap, FitConfig
from orchestrator.fitting.table import assign_budgets, read_runs_csv, tidy_runs

EPOCH_COLUMNS = ColumnMap(n_params="Model Size", flops="Training FLOP")


def test_epoch_csv_maps_columns_derives_d_and_drops_the_five_highest(epoch_csv):
    options = FitConfig(columns=EPOCH_COLUMNS, drop_highest=5)
    table = tidy_runs(read_runs_csv(epoch_csv, columns=options.columns), options=options)
    raw = pd.read_csv(epoch_csv)
    assert len(table.runs) == 240 and table.n_input == 245
    # D is derived as C / (6 N) because the CSV stores no tokens.
    np.testing.assert_allclose(table.runs["D"], table.runs["C"] / (6 * table.runs["N"]))
    # The exclusions are the 5 highest losses, each with its reason.
    dropped = sorted(float(raw.loc[int(e.trial_id[3:]), "loss"]) for e in table.excluded)
    assert dropped == sorted(raw["loss"].nlargest(5).tolist())
    assert all("fit.drop_highest=5" in e.reason for e in table.excluded)


def test_epoch_digitised_budgets_group_into_the_nine_chinchilla_budgets(epoch_csv):
    # Chinchilla's IsoFLOP budgets: 6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21 (read off a plot).
    options = FitConfig(columns=EPOCH_COLUMNS, drop_highest=5)
    table = tidy_runs(read_runs_csv(epoch_csv, columns=options.columns), options=options)
    assert table.budget_grouping == "density"
    found = np.sort(table.runs["budget"].dropna().unique())
    nominal = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])
    assert len(found) == 9
    assert np.all(np.abs(np.log10(found / nominal)) < 0.06)


def test_exact_budgets_of_a_real_sweep_group_exactly():
    C = np.repeat([1e18, 3e18, 1e19], 5) * (1 + 1e-6 * np.arange(15))
    budgets, how = assign_budgets(C)
    assert how == "exact" and len(np.unique(np.round(np.log10(budgets), 4))) == 3


def test_sweep_schema_conventions_and_status_exclusions(sim):
    runs, _ = sim.curves()
    runs = runs.iloc[:30].copy()
    runs.loc[0, "status"] = "diverged"
    runs.loc[1, "status"] = "failed"
    runs.loc[2, "final_eval_loss"] = np.nan
    runs.loc[3, "final_eval_loss"] = 99.0
    options = FitConfig(n_convention="nonembed", c_convention="6nd", loss_ceiling=50.0)
    table = tidy_runs(runs, options=options)
    reasons = {e.trial_id: e.reason for e in table.excluded}
    assert reasons[runs.trial_id[0]] == "status=diverged" and reasons[runs.trial_id[1]] == "status=failed"
    assert "not finite" in reasons[runs.trial_id[2]] and "fit.loss_ceiling" in reasons[runs.trial_id[3]]
    kept = runs.iloc[4:]
    np.testing.assert_allclose(table.runs["N"], kept["N_nonembed"])
    # Under 6nd, C = 6 N D with the fitted N (here N_nonembed: Kaplan et al.'s convention), not the total's C_6ND.
    np.testing.assert_allclose(table.runs["C"], 6 * kept["N_nonembed"] * kept["D"])
    assert table.conventions["n_convention"] == "nonembed"


def test_openathena_isoflops_load_with_column_mapping(reference):
    path = reference("openathena_isoflops_combined_annotated.csv")
    options = FitConfig(columns=ColumnMap(n_params="params"), c_convention="6nd")
    frame = read_runs_csv(path, columns=options.columns)
    frame = frame.loc[frame["experiment"] == "llama_3__raw_loss"]
    table = tidy_runs(frame, options=options)
    assert table.budget_grouping == "column"
    assert sorted(table.runs["budget"].unique()) == sorted(frame["budget"].unique())
    np.testing.assert_allclose(table.runs["C"], 6 * table.runs["N"] * table.runs["D"])


def test_misfitting_conventions_pick_different_columns(reference):
    path = reference("misfitting_li2025_scaling_results_last_ckpt_only.csv")
    columns = ColumnMap(n_params="N", n_nonembed="N_no_emb", tokens="D", flops="C", flops_6nd="C_6ND")
    frame = read_runs_csv(path, columns=columns)
    total = tidy_runs(frame, options=FitConfig(columns=columns))
    nonembed = tidy_runs(frame, options=FitConfig(columns=columns, n_convention="nonembed", c_convention="6nd"))
    raw = pd.read_csv(path)
    # The published CSV repeats one row exactly: it is left out once, with its reason and a warning.
    assert raw.duplicated().sum() == 1 and len(total.runs) == len(raw) - 1
    assert [e.reason for e in total.excluded] == ["duplicate: repeats an earlier row exactly"]
    assert total.warnings and "repeat an earlier row" in total.warnings[0]
    raw = raw.drop_duplicates().reset_index(drop=True)
    np.testing.assert_allclose(total.runs["N"], raw["N"])
    np.testing.assert_allclose(nonembed.runs["N"], raw["N_no_emb"])
    np.testing.assert_allclose(nonembed.runs["C"], raw["C_6ND_no_emb"].astype(float), rtol=1e-9)
    # Exact FLOPs per token exceed 6N (attention and the output head): k = C / (N D) > 6 on every run.
    assert (total.runs["C"] / (total.runs["N"] * total.runs["D"]) > 6.0).all()


def test_llama3_without_parameter_counts_derives_n(reference):
    path = reference("llama3_isoflops_points_extracted.csv")
    columns = ColumnMap(n_params=None, tokens="training_tokens", flops="compute_budget", budget="compute_budget",
                        loss="validation_loss")
    table = tidy_runs(read_runs_csv(path, columns=columns), options=FitConfig(columns=columns))
    np.testing.assert_allclose(table.runs["N"], table.runs["C"] / (6 * table.runs["D"]))
    assert table.runs["budget"].nunique() == 10


def test_missing_mapped_column_names_the_key(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": [1e8, 2e8], "tokens": [1e9, 2e9], "loss": [3.0, 2.9]}).to_csv(path, index=False)
    with pytest.raises(FitInputError, match=r"fit.columns.n_params='Model Size' is not a column"):
        read_runs_csv(path, columns=ColumnMap(n_params="Model Size"))


@pytest.mark.parametrize("column, value, message", [
    ("n_params", np.nan, "column N has 1 NaN or non-positive"),
    ("tokens", -5.0, "column D has 1 NaN or non-positive"),
    ("loss", 0.0, "column loss has 1 NaN or non-positive"),
])
def test_nan_or_non_positive_values_are_rejected(column, value, message):
    df = pd.DataFrame({"n_params": [1e8, 2e8, 4e8], "tokens": [1e9, 2e9, 4e9], "flops": [6e17, 2.4e18, 9.6e18],
                       "loss": [3.0, 2.9, 2.8]})
    df.loc[1, column] = value
    with pytest.raises(FitInputError, match=message):
        tidy_runs(df, options=FitConfig())


def test_all_runs_excluded_is_one_clear_sentence():
    df = pd.DataFrame({"n_params": [1e8, 2e8], "tokens": [1e9, 2e9], "flops": [6e17, 2.4e18], "loss": [3.0, 2.9]})
    with pytest.raises(FitInputError) as err:
        tidy_runs(df, options=FitConfig(loss_ceiling=1.0))
    assert str(err.value).startswith("all 2 runs were excluded") and "loss above fit.loss_ceiling" in str(err.value)


def test_exact_convention_without_flops_column_says_what_to_use():
    df = pd.DataFrame({"n_params": [1e8, 2e8], "tokens": [1e9, 2e9], "loss": [3.0, 2.9]})
    with pytest.raises(FitInputError, match="fit.c_convention=6nd"):
        tidy_runs(df, options=FitConfig())
