"""Where Optuna studies live (orchestrator/search/storage.py), with real Optuna storages in tmp_path: the
journal next to the MLflow SQLite DB by default, an RDB URL when given, and a study found again on reopen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from orchestrator.search.options import SearchConfig
from orchestrator.search.storage import JOURNAL, journal_path, open_storage, storage_label, study_name

REPO = Path(__file__).resolve().parents[2]


def test_the_journal_sits_next_to_the_mlflow_db_or_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db_dir = tmp_path / "store"
    assert journal_path(f"sqlite:///{db_dir / 'mlflow.db'}") == db_dir / JOURNAL
    assert journal_path(None) == tmp_path.resolve() / JOURNAL  # the default store: <cwd>/mlflow.db
    assert journal_path("http://127.0.0.1:5000") == tmp_path / JOURNAL  # a server: the working folder
    # The label names what is used: the RDB URL when given, else the journal's path.
    assert storage_label(SearchConfig(), tracking_uri=None) == str(tmp_path.resolve() / JOURNAL)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert storage_label(SearchConfig(storage=url), tracking_uri=None) == url


def test_a_study_in_the_default_journal_is_found_again_after_reopening(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Before a search ran (action=plan, fit): no journal, nothing created.
    assert open_storage(SearchConfig(), tracking_uri=uri, create=False) is None
    assert not (tmp_path / JOURNAL).exists()
    storage = open_storage(SearchConfig(), tracking_uri=uri)
    name = study_name("lr_search_tiny", "N=3e+04 D=1e+06")
    assert name == "lr_search_tiny/N=3e+04 D=1e+06"
    study = optuna.create_study(study_name=name, storage=storage)
    study.add_trial(optuna.trial.create_trial(params={"lr": 3e-3}, distributions={
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}, value=2.5))
    assert (tmp_path / JOURNAL).exists()
    # A later driver (a resumed search) opens the same file, without create, and finds the study's trials.
    again = open_storage(SearchConfig(), tracking_uri=uri, create=False)
    assert optuna.study.get_all_study_names(again) == [name]
    loaded = optuna.load_study(study_name=name, storage=again)
    assert [(t.params["lr"], t.value) for t in loaded.trials] == [(3e-3, 2.5)]


def test_an_rdb_url_is_used_instead_of_the_journal(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(SearchConfig(storage=url), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert isinstance(storage, optuna.storages.RDBStorage)
    optuna.create_study(study_name="s/N=1e+05", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                          n_trials=2)
    assert (tmp_path / "optuna.db").exists() and not (tmp_path / JOURNAL).exists()
    assert len(optuna.load_study(study_name="s/N=1e+05", storage=url).trials) == 2


def test_an_unknown_rdb_scheme_is_one_sentence_at_composition():
    with pytest.raises(ValueError, match="search.storage='optuna.db' is not a URL"):
        SearchConfig(storage="optuna.db")


def test_importing_the_module_leaves_optunas_logging_alone_and_opening_quiets_it(tmp_path):
    # No import-time side effects: Optuna's verbosity changes only when a storage is opened for a search.
    code = ("import optuna; before = optuna.logging.get_verbosity(); import orchestrator.search.storage as s; "
            "assert optuna.logging.get_verbosity() == before == optuna.logging.INFO, before; "
            "s.open_storage(s.SearchConfig(), tracking_uri=None); "
            "assert optuna.logging.get_verbosity() == optuna.logging.WARNING")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
