"""Bad command lines and bad values fail before any work, each as one `error:` line naming the flag."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from pex_jax import train
from pex_jax.config import RANGES, default_config
from pex_jax.errors import ConfigError
from pex_jax.train import validate_config
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
POINTMAZE = f"--config={ROOT / 'experiments/configs/pointmaze.py'}:umaze"


@pytest.fixture
def cli(monkeypatch, capsys):
    """`train.main(argv)` (or another CLI's `main`) with fresh absl flags; returns (exit code, stderr lines, the
    config `train` would run)."""

    def call(*args: str, main=None):
        argv = ["pex_jax.train", *args]
        fresh = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "config", flag_values=fresh, lock_config=True)
        monkeypatch.setattr(flags, "FLAGS", fresh)
        monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
        got = {}
        monkeypatch.setattr(train, "run", lambda config: got.setdefault("config", config))
        code = (main or train.main)(argv)
        return code, capsys.readouterr().err.splitlines(), got.get("config")

    return call


# --- Unknown fields and unparsable values ---


@pytest.mark.parametrize("override, unknown, nearest", [
    ("--config.batch_sze=32", "batch_sze", "batch_size"),
    ("--config.inv_temp=3", "inv_temp", "inv_temperature"),
    ("--config.wandb.projct=x", "wandb.projct", "wandb.project"),  # nested, parent exists
    ("--config.evaluation.episodes=3", "evaluation.episodes", None),  # nested, parent does not
])
def test_unknown_config_field_is_one_error_line_with_the_nearest_field_and_exit_2(cli, override, unknown, nearest):
    code, err, config = cli(POINTMAZE, override)
    assert code == 2 and config is None
    assert len(err) == 1, err
    assert err[0].startswith(f"error: unknown config field --config.{unknown};")
    assert "the nearest valid field is --config." in err[0]
    if nearest is not None:
        assert err[0].endswith(f"--config.{nearest}")


@pytest.mark.parametrize("args, needles", [
    ((POINTMAZE, "--config.batch_size=abc"), ("--config.batch_size=abc", "int")),
    ((POINTMAZE, "--config.lr=fast"), ("--config.lr=fast", "float")),
    ((POINTMAZE, "--config.progress=maybe"), ("--config.progress=maybe", "boolean")),
    ((f"--config={ROOT / 'experiments/configs/antmaze.py'}:umazee",), ("unknown AntMaze task 'umazee'",)),
    (("--config=experiments/configs/nothere.py",), ("cannot load the config file", "nothere.py")),
    (("--config=experiments/configs/nothere.py", "--config.seeds=1"), ("cannot load the config file",)),
])
def test_unparsable_value_or_config_is_one_error_line_and_exit_2(cli, args, needles):
    code, err, config = cli(*args)
    assert code == 2 and config is None
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0]


def test_pretrain_reports_an_unknown_field_the_same_way(cli):
    from pex_jax import pretrain

    code, err, _ = cli(f"--config={ROOT / 'experiments/configs/antmaze.py'}", "--tasks=umaze", "--config.seedz=0-3",
                       main=pretrain.main)
    assert code == 2
    assert err == ["error: unknown config field --config.seedz; the nearest valid field is --config.seeds"]


def test_valid_overrides_reach_the_run(cli):
    code, err, config = cli(POINTMAZE, "--config.batch_size=32", "--config.wandb.project=p",
                            "--config.inv_temperature=3")
    assert code == 0 and not [line for line in err if line.startswith("error:")]
    assert (config.batch_size, config.wandb.project, config.inv_temperature) == (32, "p", 3.0)


def test_an_attribute_error_inside_the_config_file_is_not_reported_as_an_unknown_field(cli, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(task=None):\n    return None.task\n")
    with pytest.raises(AttributeError):
        cli(f"--config={broken}", "--config.batch_size=3")


# --- Value ranges ---


def _rejected(tmp_path, **overrides) -> str:
    with pytest.raises(ConfigError) as e:
        validate_config(tiny_config(tmp_path, **overrides))
    message = str(e.value)
    assert "\n" not in message
    return message


COUNTS_AT_LEAST_ONE = ["eval_episodes", "interim_eval_episodes", "eval_parallel_envs", "keep_checkpoints", "batch_size",
                       "utd", "updates_per_call", "offline_eval_every", "online_eval_every", "log_every",
                       "buffer_capacity"]
COUNTS_AT_LEAST_ZERO = ["offline_steps", "online_steps", "learning_starts", "checkpoint_every"]


@pytest.mark.parametrize("name", COUNTS_AT_LEAST_ONE)
def test_a_count_of_zero_is_rejected_naming_the_flag_and_the_minimum(tmp_path, name):
    assert _rejected(tmp_path, **{name: 0}) == f"{name} must be >= 1, got 0 (--config.{name})"


@pytest.mark.parametrize("name", COUNTS_AT_LEAST_ZERO)
def test_a_negative_step_count_is_rejected_naming_the_flag_and_the_minimum(tmp_path, name):
    assert _rejected(tmp_path, **{name: -1}) == f"{name} must be >= 0, got -1 (--config.{name})"


@pytest.mark.parametrize("name", ["env_workers", "eval_workers"])
def test_worker_counts_below_auto_are_rejected(tmp_path, name):
    assert _rejected(tmp_path, **{name: -2}) == f"{name} must be >= -1, got -2 (--config.{name})"


@pytest.mark.parametrize("name, value", [("lr", 0.0), ("lr", -1e-4), ("lr", math.nan), ("adv_clip", 0.0),
                                         ("init_temperature", 0.0), ("worker_timeout", 0.0)])
def test_a_rate_or_scale_that_must_be_positive_is_rejected(tmp_path, name, value):
    assert _rejected(tmp_path, **{name: value}) == f"{name} must be > 0, got {value} (--config.{name})"


@pytest.mark.parametrize("name", ["beta", "inv_temperature"])
def test_a_negative_temperature_is_rejected(tmp_path, name):
    assert _rejected(tmp_path, **{name: -0.5}) == f"{name} must be >= 0, got -0.5 (--config.{name})"


@pytest.mark.parametrize("name, value, interval", [
    ("tau", 0.0, "(0, 1]"), ("tau", 1.5, "(0, 1]"), ("gamma", 0.0, "(0, 1]"), ("expectile", 1.0, "(0, 1)"),
    ("expectile", 0.0, "(0, 1)"), ("offline_ratio", 1.5, "[0, 1]"), ("eval_epsilon", -0.1, "[0, 1]"),
])
def test_a_fraction_outside_its_interval_is_rejected_naming_the_interval(tmp_path, name, value, interval):
    assert _rejected(tmp_path, **{name: value}) == f"{name} must be in {interval}, got {value} (--config.{name})"


@pytest.mark.parametrize("dims", [(), ("abc",), (64, 0), (64, -8), (64, True)])
def test_hidden_dims_must_be_a_non_empty_list_of_positive_widths(tmp_path, dims):
    message = _rejected(tmp_path, hidden_dims=dims)
    assert message.startswith("hidden_dims must be a non-empty list of positive layer widths")
    assert message.endswith(f"got {dims!r} (--config.hidden_dims)")


def test_a_replay_buffer_smaller_than_one_batch_is_rejected(tmp_path):
    assert _rejected(tmp_path, batch_size=64, buffer_capacity=63) == \
        "buffer_capacity must be >= batch_size (64), got 63 (--config.buffer_capacity)"


def test_every_boundary_value_is_accepted(tmp_path):
    edges = {"eval_episodes": 1, "interim_eval_episodes": 1, "eval_parallel_envs": 1, "keep_checkpoints": 1, "utd": 1,
             "learning_starts": 0, "checkpoint_every": 0, "env_workers": -1, "eval_workers": -1, "tau": 1.0,
             "gamma": 1.0, "beta": 0.0, "inv_temperature": 0.0, "offline_ratio": 1.0, "eval_epsilon": 0.0,
             "hidden_dims": (1,), "batch_size": 64, "buffer_capacity": 64}
    assert validate_config(tiny_config(tmp_path, **edges)) == [0]


def test_the_ranges_name_real_fields_and_hold_the_defaults():
    defaults = default_config()
    for name, valid in RANGES.items():
        assert name in defaults, name
        assert defaults[name] in valid, (name, defaults[name], str(valid))


def _experiment_tasks(module) -> list[str]:
    if hasattr(module, "TASKS"):  # antmaze
        return [t + suffix for t in module.TASKS for suffix in ("", "-d4rl", "-local")]
    if hasattr(module, "MAZES"):  # pointmaze
        return list(module.MAZES)
    return ([f"{e}-{lv}" for e in module.ENVS for lv in module.LEVELS]  # locomotion
            + [f"{e}-{lv}-local" for e in module.LOCAL_ENVS for lv in module.LOCAL_LEVELS])


@pytest.mark.parametrize("domain", ["pointmaze", "antmaze", "locomotion"])
def test_every_shipped_experiment_config_passes_validation(domain):
    spec = importlib.util.spec_from_file_location(f"cfg_{domain}", ROOT / "experiments" / "configs" / f"{domain}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tasks = _experiment_tasks(module)
    assert len(tasks) >= 3
    for task in tasks:
        assert validate_config(module.get_config(task)) == [0], task


def test_the_default_run_checkpoints_its_online_phase_so_a_preemption_loses_a_bounded_share():
    c = default_config()
    assert 0 < c.checkpoint_every <= c.online_steps // 10  # at most a tenth of a default online phase is lost
    assert c.keep_checkpoints >= 1
