"""The config is the one source of truth: validation, error messages, schema, hash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from etem.config import EtemConfig, load_config, schema
from etem.config.defaults import defaults_yaml
from etem.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "smoke.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert isinstance(cfg, EtemConfig)
    assert cfg.results_path.name == cfg.name


def test_full_campaign_is_about_900_structures() -> None:
    cfg = load_config(ROOT / "config" / "config.yaml")
    assert 850 <= cfg.structures.total <= 1000
    assert cfg.structures.pt_on_ceo2.count > 0 and cfg.structures.oxides.count > 0


def test_bad_value_names_the_key_and_reason() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"simulation": {"defocus_nm": "abc"}})
    msg = str(err.value)
    assert msg.startswith("simulation.defocus_nm:")
    assert "list" in msg and "'abc'" in msg


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"training\.denoiser\.stepz: unknown key"):
        load_config({"training": {"denoiser": {"stepz": 3}}})


def test_bounds_are_enforced() -> None:
    with pytest.raises(ConfigError, match=r"simulation\.energy_kv"):
        load_config({"simulation": {"energy_kv": -300}})


def test_overrides_use_dotted_keys() -> None:
    cfg = load_config({"seed": 1}, {"simulation.defocus_nm": [1.0, 2.0]})
    assert cfg.simulation.defocus_nm == [1.0, 2.0]


def test_hash_is_stable_and_sensitive() -> None:
    a = load_config({"seed": 1}).hash()
    assert a == load_config({"seed": 1}).hash()
    assert a != load_config({"seed": 2}).hash()


def test_committed_schema_matches_models() -> None:
    committed = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    assert committed == json.loads(json.dumps(schema())), (
        "schema out of date: run `etem config schema --out workflow/schemas/config.schema.json`"
    )


def test_committed_defaults_file_is_generated_and_loads_to_the_defaults() -> None:
    text = (ROOT / "config" / "defaults.yaml").read_text()
    assert text == defaults_yaml(), "run `make schema` (etem config defaults)"
    data = yaml.safe_load(text)
    assert load_config(data).model_dump() == EtemConfig().model_dump()
    assert "# multislice slice thickness [Å]" in text  # descriptions with units as comments


def test_missing_config_file_is_one_line(etem_bin: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [etem_bin, "config", "validate", "-c", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        f"etem: error: config file {tmp_path / 'nope.yaml'}: no such file"
    ]


def test_bad_config_cli_is_one_line_without_traceback(etem_bin: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulation:\n  defocus_nm: abc\n")
    out = subprocess.run(
        [etem_bin, "config", "validate", "-c", str(bad)], capture_output=True, text=True,
        check=False,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("etem: error: simulation.defocus_nm:")


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"apply": {"tile_px": 128}}, "config key apply.tile_px moved to apply.inference.tile_px"),
        ({"apply": {"event_glr": False}}, "config key apply.event_glr moved to apply.events.glr"),
        ({"apply": {"column_polarity": "dark"}},
         "config key apply.column_polarity moved to apply.tracks.polarity"),
        ({"apply": {"calibration_frames": 10}},
         "config key apply.calibration_frames moved to apply.events.calibration_frames"),
        ({"apply": {"finetune_steps": 5, "chunk_frames": 8}},
         "config key apply.finetune_steps moved to apply.finetune.steps; "
         "config key apply.chunk_frames moved to apply.io.chunk_frames"),
        # a former flat key written inside its new section keeps the section's own name
        ({"apply": {"events": {"event_glr": False}}},
         "config key apply.events.event_glr moved to apply.events.glr"),
        ({"apply": {"inference": {"tile_px": 64, "batch_size": 2}, "io": {"tile_px": 64}}},
         "config key apply.io.tile_px moved to apply.inference.tile_px"),
    ],
)
def test_flat_apply_key_names_its_new_home(data: dict[str, object], line: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert str(err.value) == line


def test_flat_apply_override_names_its_new_home() -> None:
    with pytest.raises(ConfigError, match=r"^config key apply\.truth_border_A moved to "
                       r"apply\.truth\.border_A$"):
        load_config(None, {"apply.truth_border_A": 2.0})


def test_flat_apply_key_cli_is_one_line(etem_bin: str, tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("name: old\napply:\n  tile_px: 128\n")
    out = subprocess.run(
        [etem_bin, "config", "validate", "-c", str(old)], capture_output=True, text=True,
        check=False,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "etem: error: config key apply.tile_px moved to apply.inference.tile_px"
    ]


def test_nested_apply_overrides_dotted_or_dict() -> None:
    base = {"apply": {"inference": {"device": "cpu"}, "io": {"chunk_frames": 8}}}
    dotted = load_config(base, {"apply.inference.tile_px": 128})
    section = load_config(base, {"apply.inference": {"tile_px": 128}})
    whole = load_config(base, {"apply": {"inference": {"tile_px": 128}}})
    for cfg in (dotted, section, whole):  # a dict merges: the file's other keys stay
        assert cfg.apply.inference.tile_px == 128 and cfg.apply.inference.device == "cpu"
        assert cfg.apply.io.chunk_frames == 8
    assert base == {"apply": {"inference": {"device": "cpu"}, "io": {"chunk_frames": 8}}}


def test_every_flat_apply_key_has_a_home() -> None:
    from etem.config.apply import MOVED_KEYS

    new = EtemConfig().model_dump(mode="json")["apply"]
    homes = {f"{section}.{key}" for section, keys in new.items() for key in keys}
    # keys that came after the flat block
    added = {"inference.score_targets", "events.calibration", "inference.pretrained",
             "models.denoiser", "models.unsupervised", "models.segmenter",
             "preprocess.detector_dqe", "inference.auto_candidates",
             "inference.match_mean", "inference.column_f1_margin", "finetune.keep_se"}
    assert sorted(MOVED_KEYS.values()) == sorted(homes - added)  # every field, each once


def test_cross_field_rule_names_the_keys() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"synthetic_movie": {"event_frames": [3]},
                     "apply": {"events": {"calibration": "leading_frames",
                                          "calibration_frames": 10}}})
    msg = str(err.value)
    assert msg.startswith("synthetic_movie.event_frames: first event at frame 3")
    assert "apply.events.calibration_frames" in msg


def test_whole_movie_calibration_allows_early_events() -> None:
    """The default (whole-movie robust) calibration needs no stable leading frames."""
    cfg = load_config({"synthetic_movie": {"event_frames": [3]},
                       "apply": {"events": {"calibration_frames": 10}}})
    assert cfg.apply.events.calibration == "whole_movie"


#: Hostile values a probe found accepted (issue 16) and the error each now gives.
HOSTILE = [
    ({"seed": "7"}, "seed: expected an integer"),
    ({"seed": True}, "seed: expected an integer"),
    ({"training": {"denoiser": {"steps": 10.5}}}, "denoiser.steps: expected an integer"),
    ({"training": {"denoiser": {"amp": "yes"}}}, "denoiser.amp: expected true or false"),
    ({"simulation": {"thickness_nm": [-2.0]}}, "thickness_nm.0: Input should be greater than 0"),
    ({"simulation": {"defocus_nm": [float("nan")]}}, "defocus_nm.0: Input should be a finite"),
    ({"simulation": {"tilts_mrad": [[5000.0, 0.0]]}}, "tilts_mrad.0.0: Input should be less"),
    ({"noise": {"train_dose_e_per_A2": [-5.0, 10.0]}}, "e_per_A2.0: Input should be greater"),
    ({"noise": {"train_dose_e_per_A2": [400.0, 20.0]}}, "expected (low, high) with low <= high"),
    ({"training": {"segmenter": {"dose_e_per_A2": [-1.0, 5.0]}}}, "segmenter.dose_e_per_A2.0"),
    ({"noise": {"benchmark_doses_e_per_A2": [0.0]}}, "benchmark_doses_e_per_A2.0: Input should"),
    ({"simulation": {"cs_um": 1e9}}, "simulation.cs_um: Input should be less than or equal"),
    ({"evaluation": {"wiener_smooth_px": 4}}, "wiener_smooth_px: expected an odd integer"),
    ({"evaluation": {"wiener_alpha": 0.0}}, "wiener_alpha: Input should be greater than 0"),
]


@pytest.mark.parametrize(("override", "message"), HOSTILE)
def test_hostile_values_are_named_errors(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(override)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_config_file_is_an_error_not_the_full_campaign(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
