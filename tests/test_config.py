"""Config loading: defaults, overrides, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream3d import config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_default_config_equals_the_built_in_defaults():
    assert config.load(ROOT / "configs" / "default.toml") == config.Config()


def test_overrides_are_typed_and_round_trip_through_toml(tmp_path):
    cfg = config.load(None, ["microscope.defocus=1500", "refine.init=uniform", "sample.slices=16"])
    assert cfg.microscope.defocus == 1500.0 and isinstance(cfg.microscope.defocus, float)
    assert cfg.refine.init == "uniform" and cfg.sample.slices == 16
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml(cfg))
    assert config.load(path) == cfg
    assert cfg.sample.sampling == (20.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["microscope.foo=1"], "unknown key microscope.foo"),
        (["nosuch.key=1"], "unknown section [nosuch]"),
        (["sample.slices=0"], "sample.slices must be >= 1"),
        (["sample.slices=2.5"], "sample.slices must be an integer"),
        (["microscope.energy=fast"], "microscope.energy must be a number"),
        (["stream.policy=newest"], "stream.policy must be"),
        (["detector.dose=-3"], "detector.dose must be > 0"),
        (["refine.iterations"], "section.key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(overrides, message):
    with pytest.raises(config.ConfigError) as info:
        config.load(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[microscope\nenergy = 3")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)
