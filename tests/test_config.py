import pytest

from raygen.config import ConfigError, RunConfig, load_config

CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_local_config_loads_and_overrides_apply():
    cfg = load_config(CONFIGS / "pick_place_local.yaml", ["stages.quality.min_score=0.8", "source.episodes=3"],
                      output="/tmp/x")
    assert isinstance(cfg, RunConfig)
    assert cfg.stages.quality.min_score == 0.8 and cfg.source.episodes == 3 and cfg.output.path == "/tmp/x"
    assert cfg.source.backend == "bullet" and cfg.source.task_params == {"steps_per_segment": 30}
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        cfg.source.episodes = 5


def test_unknown_keys_are_named_with_the_known_ones(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("source:\n  backend: bullet\n  episods: 3\nresources:\n  workers_per_gpu: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and "2 problems" in msg
    assert ("source.episods: unknown key; known keys here: ['backend', 'backend_options', 'bottleneck', 'droid', "
            "'episodes',") in msg
    assert "resources.workers_per_gpu: Input should be greater than or equal to 1 (got 0)" in msg


@pytest.mark.parametrize("override,expect", [
    ("source.backend=unity", "source.backend: Input should be 'bullet', 'isaac', 'droid' or 'zed' (got 'unity')"),
    ("source.episodes=-1", "source.episodes: Input should be greater than or equal to 1 (got -1)"),
    ("source.width=33", "source.width: Value error, must be even for yuv420p video, got 33"),
    ("nope=1", "nope: unknown key; known keys here: ['cost', 'feeds', 'output', 'resources', 'source', 'stages', "
               "'upload']"),
])
def test_bad_values_fail_before_anything_starts(override, expect):
    with pytest.raises(ConfigError, match=__import__("re").escape(expect)):
        load_config(None, [override])


def test_bad_files():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["source.episodes"])


def test_set_into_a_value_is_a_config_error():
    with pytest.raises(ConfigError, match="source was set to a value, not a section"):
        load_config(None, ["source=3", "source.episodes=4"])


@pytest.mark.parametrize("overrides", [[], ["source.backend=droid", "source.root=/data/droid", "source.width=320",
                                             "source.height=180", "source.droid.labs=[AUTOLab]"]])
def test_a_resolved_config_validates_again(overrides):
    """`raygen submit` ships the resolved config, every default written out; it must load as it was."""
    from raygen.config import RunConfig

    cfg = load_config(None, overrides)
    assert RunConfig.model_validate(cfg.model_dump(mode="json")) == cfg
