"""The trainer schema's per-trainer knobs: the surrogate's typed `trainer.surrogate`, a plug-in's free-form
`trainer.options`, and the section a trial carries (what the trainer receives, the planner hashes and MLflow
logs)."""

from __future__ import annotations

import re

import pytest

from trainers.config import SurrogateConfig, TrainerConfig, trainer_section


def test_a_gpt_trials_section_carries_no_surrogate_knobs_and_no_options():
    # The GPT trainer is given neither: its section says so with `surrogate: {}` and no `options` key, so a
    # surrogate knob or a plug-in option added to the schema changes no GPT trial's id or MLflow params.
    section = trainer_section(TrainerConfig())
    assert section["surrogate"] == {} and "options" not in section
    assert section["target"] == "trainers.gpt:train" and section["lr"] == 3e-3


def test_the_section_names_what_differs_from_the_defaults_and_rebuilds_the_config():
    trainer = TrainerConfig(target="trainers.surrogate:train",
                            surrogate=SurrogateConfig(E=1.69, noise=0.01, points=3, crash_once=True),
                            options={"sleep_s": 1.5})
    section = trainer_section(trainer)
    assert section["surrogate"] == {"noise": 0.01, "points": 3, "crash_once": True}  # E=1.69 is the default
    assert section["options"] == {"sleep_s": 1.5}
    assert TrainerConfig(**section) == trainer  # the trainer rebuilds exactly the config that was planned


def test_a_sections_surrogate_mapping_is_checked_like_the_schema():
    # A trial's section (a plain mapping) goes through the same checks as the composed config.
    assert TrainerConfig(surrogate={"noise": 0.02}).surrogate == SurrogateConfig(noise=0.02)
    with pytest.raises(ValueError, match=re.escape("trainer.surrogate has unknown keys ['nosie']: allowed are")):
        TrainerConfig(surrogate={"nosie": 0.02})
    with pytest.raises(ValueError, match=re.escape("trainer.surrogate.beta=-1 is invalid: it must be >= 0.")):
        TrainerConfig(surrogate={"beta": -1})


def test_options_are_free_form_and_unchecked_by_the_schema():
    # Only the plug-in's own validate hook judges its options (trainers/api.py; tests/test_preflight.py).
    trainer = TrainerConfig(target="behaviours:train", options={"sleep_s": -3, "anything": [1, "two"]})
    assert trainer_section(trainer)["options"] == {"sleep_s": -3, "anything": [1, "two"]}
