"""Sweep YAMLs: schema, the exact argv a W&B agent would run, absl parsing, and a tiny real trial.

The agent is not available offline (it polls the W&B server), so the macro expansion of
`wandb_agent.py` is reimplemented here: `${env}` -> /usr/bin/env, `${interpreter}` -> python
(found on PATH), `${program}` -> program, `${args}` -> `--k=v` in parameter order.
"""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from absl import flags
from ml_collections import config_flags

import pex_jax.train  # noqa: F401  (the trials run this module: an import error must fail, not skip)
from pex_jax.config import default_config
from pex_jax.datagen.pointmaze import generate_pointmaze
from pex_jax.tools.tracking import SWEEP_METRIC

ROOT = Path(__file__).resolve().parents[1]
SWEEP_DIR = ROOT / "experiments" / "sweeps"
SWEEPS = sorted(SWEEP_DIR.glob("*.yaml"))
REQUIRED = {"pex_antmaze_invtemp_expectile.yaml", "algo_task_grid.yaml", "pointmaze_smoke.yaml"}
TOP_KEYS = {"program", "method", "parameters", "metric", "name", "description", "entity", "project",
            "early_terminate", "command", "run_cap"}  # fmt: skip
DISTRIBUTIONS = {"constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
                 "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal"}  # fmt: skip


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def assignments(cfg: dict) -> list[dict]:
    """Grid: the full product in parameter order. Random/bayes: the low and high corners."""
    names, choices = [], []
    for name, spec in cfg["parameters"].items():
        names.append(name)
        if "value" in spec:
            choices.append([spec["value"]])
        elif "values" in spec:
            choices.append(list(spec["values"]))
        else:
            choices.append([spec["min"], spec["max"]])
    if cfg["method"] == "grid":
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]
    return [
        dict(zip(names, [c[0] for c in choices], strict=True)),
        dict(zip(names, [c[-1] for c in choices], strict=True)),
    ]


def expand(cfg: dict, params: dict) -> list[str]:
    """The argv `wandb agent` builds for one trial (see module docstring)."""
    macros = {
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [cfg["program"]],
        "args": [f"--{k}={v}" for k, v in params.items()],
        "args_no_equals": [x for k, v in params.items() for x in (f"--{k}", str(v))],
        "args_no_hyphens": [f"{k}={v}" for k, v in params.items()],
    }
    command = cfg.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    argv: list[str] = []
    for chunk in command:
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            assert chunk[2:-1] in macros, f"unsupported macro {chunk}"
            argv += macros[chunk[2:-1]]
        else:
            argv.append(chunk)
    return argv


def parse_train_argv(argv: list[str]):
    """Parse the flags after `-m pex_jax.train` exactly as the runner does, in a fresh FlagValues."""
    assert argv[1:4] == ["python", "-m", "pex_jax.train"], argv
    args = ["pex_jax.train", *argv[4:]]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True, sys_argv=args)
    fv(args)
    return fv.config


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_required_sweep_files_exist():
    assert REQUIRED <= {p.name for p in SWEEPS}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_has_valid_keys_metric_and_parameter_specs(path):
    cfg = load(path)
    assert set(cfg) <= TOP_KEYS, set(cfg) - TOP_KEYS
    assert cfg["program"] and cfg["method"] in ("grid", "random", "bayes")
    assert cfg["metric"] == {"name": SWEEP_METRIC, "goal": "maximize"}
    command = cfg["command"]
    assert isinstance(command, list) and "${args}" in command
    defaults = default_config()
    for name, spec in cfg["parameters"].items():
        kinds = {"value", "values", "distribution"} & set(spec)
        assert len(kinds) == 1, f"{name}: exactly one of value/values/distribution, got {spec}"
        if "values" in spec:
            assert isinstance(spec["values"], list) and spec["values"]
        if "distribution" in spec:
            assert cfg["method"] != "grid", f"{name}: grid sweeps cannot sample distributions"
            assert spec["distribution"] in DISTRIBUTIONS and spec["min"] < spec["max"]
        if name == "config":
            for value in spec.get("values", [spec.get("value")]):
                file, _, arg = value.partition(":")
                assert (ROOT / file).is_file() and arg, value
        else:
            assert name.startswith("config."), f"{name}: parameters must be --config.<field> overrides"
            _get(defaults, name.removeprefix("config."))  # KeyError: no such config field


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_trial_argv_parses_into_the_requested_config(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the agent runs trials from the directory it was started in
    cfg = load(path)
    dataset_ids = set()
    trials = assignments(cfg)
    for params in trials:
        # the server may hand parameters back in file order or sorted: both must parse
        for ordered in (params, dict(sorted(params.items()))):
            config = parse_train_argv(expand(cfg, ordered))
            for name, value in params.items():
                if name != "config":
                    got = _get(config, name.removeprefix("config."))
                    assert got == pytest.approx(value) if isinstance(value, float) else got == value, name
        dataset_ids.add(config.dataset_id)
    if "config" in cfg["parameters"]:  # the task axis really changes the task
        assert len(dataset_ids) == len(cfg["parameters"]["config"].get("values", [None]))


def test_expand_matches_the_agent_argv_for_a_grid_trial():
    cfg = load(SWEEP_DIR / "pex_antmaze_invtemp_expectile.yaml")
    trials = assignments(cfg)
    assert len(trials) == 12
    assert expand(cfg, trials[5]) == [
        "/usr/bin/env", "python", "-m", "pex_jax.train", "--config=experiments/configs/antmaze.py:umaze-diverse-d4rl",
        "--config.algo=pex", "--config.seeds=0-4", "--config.inv_temperature=3.0", "--config.expectile=0.9",
    ]  # fmt: skip
    task_grid = load(SWEEP_DIR / "algo_task_grid.yaml")
    argv = expand(task_grid, assignments(task_grid)[-1])
    assert argv[4:] == ["--config=experiments/configs/antmaze.py:large-diverse-d4rl", "--config.algo=scratch",
                        "--config.seeds=0-4"]  # fmt: skip


# ------------------------------------------------------------------------------ end to end
TINY = {
    "dataset_id": "pex/pointmaze/test-v0",
    "offline_steps": 200,
    "offline_eval_every": 100,
    "updates_per_call": 100,
    "online_steps": 200,
    "online_eval_every": 100,
    "learning_starts": 50,
    "log_every": 100,
    "eval_episodes": 1,
    "eval_parallel_envs": 1,
    "batch_size": 64,
    "hidden_dims": "(32, 32)",
    "download": False,
    "progress": False,
}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """The 3000-step generated PointMaze test dataset in its own MINARI_DATASETS_PATH."""
    path = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(path))
        generate_pointmaze(
            maze="umaze", steps=3000, noise=0.5, seed=0, dataset_id=TINY["dataset_id"], ref_episodes=2, progress=False
        )
    return path


@pytest.mark.slow
def test_smoke_sweep_trials_run_and_report(tmp_path, tiny_dataset):
    from pex_jax.tools.report import make_report
    from tests.test_tracking import _parse_run

    cfg = load(SWEEP_DIR / "pointmaze_smoke.yaml")
    fields = default_config()
    overrides = [f"--config.{k}={v}" for k, v in TINY.items() if k in fields]
    trials = assignments(cfg)
    assert [t["config.algo"] for t in trials] == ["pex", "scratch"]
    n_seeds = 2
    for i, params in enumerate(trials):
        run_dir = tmp_path / "runs" / f"trial{i}"
        argv = expand(cfg, params) + overrides + [f"--config.run_dir={run_dir}"]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MINARI_DATASETS_PATH": str(tiny_dataset),
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path / f"wandb{i}"),
            "WANDB_SILENT": "true",
            "JAX_PLATFORMS": "cpu",
        }
        if i == 0:  # what `wandb agent` exports to its trial process
            env.update(WANDB_SWEEP_ID="smoke-sweep", WANDB_RUN_ID="smoke-trial0")
        else:
            env.pop("WANDB_SWEEP_ID", None)
            env.pop("WANDB_RUN_ID", None)
        (tmp_path / f"wandb{i}").mkdir()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert {"config.json", "metrics.jsonl", "summary.json"} <= {p.name for p in run_dir.iterdir()}
        config = json.loads((run_dir / "config.json").read_text())
        assert config["algo"] == params["config.algo"] and config["seeds"] == [0, 1]
        wandb_runs = sorted((tmp_path / f"wandb{i}" / "wandb").glob("offline-run-*"))
        if i == 0:  # sweep trial: one run with the seed-mean sweep metric
            assert len(wandb_runs) == 1 and wandb_runs[0].name.endswith("smoke-trial0")
            summary = _parse_run(wandb_runs[0])["summary"]
            per_seed = json.loads((run_dir / "summary.json").read_text())["per_seed"]
            finals = [per_seed[s]["final/normalized_score"] for s in ("0", "1")]
            assert summary[SWEEP_METRIC] == pytest.approx(np.mean(finals))
        else:
            assert len(wandb_runs) == n_seeds

    rows, _ = make_report([str(tmp_path / "runs")], tmp_path / "report")
    assert {(r.algo, len(r.seeds)) for r in rows} == {("pex", 2), ("scratch", 2)}
    assert all(r.online_score is not None for r in rows)


def test_a_sweep_can_mark_grid_dimensions_so_each_trial_runs_a_sub_grid(monkeypatch):
    from pex_jax.grid import expand as expand_grid

    cfg = load(SWEEP_DIR / "pex_antmaze_expectile_x_invtemp_grid.yaml")
    trials = assignments(cfg)
    assert len(trials) == 3  # W&B trials: one per expectile
    for params in trials:
        config = parse_train_argv(expand(cfg, params))
        points = expand_grid(config)
        assert [p.inv_temperature for p in points] == [1.0, 3.0, 10.0, 30.0]
        assert {p.expectile for p in points} == {params["config.expectile"]}
