"""`make antmaze` on a tiny synthetic file in D4RL's layout: offline -> online end to end, D4RL-scale report."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from pex_jax.data.d4rl import D4RL_ANTMAZE_FILES
from tests.test_d4rl_data import _closed_port, _umaze_arrays, _write

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--config.hidden_dims='(32, 32)' --config.batch_size=64 --config.offline_steps=200 "
        "--config.offline_eval_every=100 --config.updates_per_call=100 --config.online_steps=300 "
        "--config.learning_starts=100 --config.online_eval_every=150 --config.log_every=100 "
        "--config.eval_episodes=2 --config.interim_eval_episodes=1 --config.eval_parallel_envs=2 "
        "--config.buffer_capacity=1000 --config.progress=False --config.wandb.enabled=False")


def _make(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu",
                "D4RL_DATASET_DIR": str(tmp_path / "d4rl"), "D4RL_URL_BASE": f"http://127.0.0.1:{_closed_port()}/",
                **env}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_make_antmaze_runs_d4rl_file_offline_to_online_with_a_success_rate_headline(tmp_path):
    _write(tmp_path / "d4rl" / D4RL_ANTMAZE_FILES["antmaze-umaze-v2"], _umaze_arrays(3000))
    run = tmp_path / "run"
    proc = _make(["antmaze", "TASK=umaze", "SEED=0-1", "ALGO=pex", f"RUN={run}", f"ARGS={TINY}"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sha256" in proc.stdout and "antmaze-umaze-v2 (d4rl_antmaze" in proc.stdout
    task_dir = run / "antmaze-umaze-d4rl"
    summary = json.loads((task_dir / "pex" / "summary.json").read_text())
    assert summary["data_source"] == "d4rl" and summary["score"].startswith("D4RL-scale")
    assert set(summary["per_seed"]["1"]) >= {"online_step0/normalized_score", "final/normalized_score"}
    assert 0.0 < summary["timing"]["eval_share"] < 1.0
    config = json.loads((task_dir / "pex" / "config.json").read_text())
    assert config["env_task"]["kind"] == "d4rl_antmaze" and config["env_task"]["success_radius"] == 0.5
    assert len(config["data_files"][0]["sha256"]) == 64
    rows = [json.loads(line) for line in (task_dir / "pex" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/normalized_score" in r]
    # Maze headline = 100 x success rate, for every evaluation.
    assert evals and all(r["eval/normalized_score"] == pytest.approx(100 * r["eval/success_rate"]) for r in evals)
    report = (run / "report" / "report.md").read_text()
    assert "| antmaze-umaze-d4rl | d4rl | 100×success | pex | 2 |" in report


def test_make_antmaze_rejects_an_unknown_source_before_any_work(tmp_path):
    proc = _make(["antmaze", "SOURCE=hf", f"RUN={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode != 0
    assert "error: SOURCE=hf" in proc.stderr and "SOURCE=minari" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_make_antmaze_without_the_d4rl_file_names_file_dir_url_and_other_sources(tmp_path):
    proc = _make(["antmaze", "TASK=umaze", f"RUN={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    line = errors[0]
    assert D4RL_ANTMAZE_FILES["antmaze-umaze-v2"] in line and str(tmp_path / "d4rl") in line
    assert "SOURCE=minari" in line and "SOURCE=local" in line
