"""Per-stage configs: each stage's file carries only its sections; a change touches only the
stages that read it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from etem.config import STAGE_SECTIONS, load_config, stage_hash, stage_yaml
from etem.errors import ConfigError

SMOKE = Path(__file__).resolve().parents[2] / "config" / "smoke.yaml"


def test_stage_files_carry_their_sections_and_load_back() -> None:
    cfg = load_config(SMOKE)
    for stage, sections in STAGE_SECTIONS.items():
        data = yaml.safe_load(stage_yaml(cfg, stage))
        tops = {s.split(".")[0] for s in sections}
        assert set(data) == {"name", "seed", "results_dir", "tracking", "stage", *tops}
        back = load_config(data)  # valid on its own (e.g. movie without apply)
        assert back.stage == stage
        for s in sections:
            assert back.section(s) == cfg.section(s)
    assert "simulation" not in yaml.safe_load(stage_yaml(cfg, "apply"))


def test_a_setting_changes_only_the_stages_that_read_it() -> None:
    base = load_config(SMOKE)
    changed = {
        "apply.events.false_alarm_rate": 0.02,
        "training.denoiser.steps": 21,
        "training.split.test_fraction": 0.3,
        "movies.synthetic": False,
    }
    expect = {
        "apply.events.false_alarm_rate": {"apply", "report"},
        "training.denoiser.steps": {"training", "evaluation", "apply", "report"},
        "training.split.test_fraction": {"training", "evaluation", "apply", "report",
                                         "simulate-code-path"},
        "movies.synthetic": {"report"},
    }
    for key, value in changed.items():
        other = load_config(SMOKE, {key: value})
        differs = {s for s in STAGE_SECTIONS if stage_hash(other, s) != stage_hash(base, s)}
        assert differs == expect[key], key


def test_stage_is_checked_and_the_cross_check_runs_on_whole_configs() -> None:
    with pytest.raises(ConfigError, match="stage: not one of"):
        load_config({"stage": "nonsense"})
    # a whole config still refuses an event inside leading calibration frames
    with pytest.raises(ConfigError, match="calibration frames"):
        load_config({"synthetic_movie": {"event_frames": [5]},
                     "apply": {"events": {"calibration": "leading_frames",
                                          "calibration_frames": 10}}})
