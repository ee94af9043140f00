"""RunLogger: run-directory files and W&B offline output (one run per seed, sweep run, resume)."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import wandb

from pex_jax.errors import ConfigError
from pex_jax.tools.tracking import RunLogger, resolve_wandb_mode, trial_scope

SEEDS = [0, 1, 2]


def _config(**overrides) -> dict:
    cfg = {
        "task": "pointmaze-umaze",
        "algo": "pex",
        "dataset_id": "pex/pointmaze/umaze-v0",
        "seeds": "0-2",
        "inv_temperature": 10.0,
        "hidden_dims": (256, 256),
        "wandb": {"enabled": True, "project": "pex-jax", "entity": "", "tags": ("smoke",)},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Offline W&B writing under tmp_path; no sweep variables leaking in from the caller."""
    for var in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_DISABLED", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    wandb.teardown()  # wandb caches the environment at first init; start each test afresh
    yield tmp_path / "wb" / "wandb"
    wandb.teardown()


def _read_wandb_records(path: Path):
    """Decode a run-*.wandb file (LevelDB-style log of protobuf Records) without a server."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if length == 0 and kind == 0:
            pos += left - 7
            continue
        buf += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST chunk
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def _parse_run(run_dir: Path) -> dict:
    """The run header, history rows, metric definitions and final summary of one offline run."""
    (wandb_file,) = run_dir.glob("run-*.wandb")
    out = {"run": None, "history": [], "metrics": {}, "summary": {}}
    for rec in _read_wandb_records(wandb_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
        elif kind == "history":
            row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            out["history"].append(row)
        elif kind == "metric" and rec.metric.name:
            out["metrics"][rec.metric.name] = rec.metric.step_metric
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def _offline_runs(wandb_root: Path) -> dict[str, dict]:
    # finish() returns before wandb-core has flushed the offline log; teardown (what process
    # exit does) waits for it, so read the files only after it.
    wandb.teardown()
    return {p.name: _parse_run(p) for p in sorted(wandb_root.glob("offline-run-*"))}  # sorted = time order


def _log_two_phases(logger: RunLogger) -> None:
    logger.log(
        {"eval/normalized_score": np.array([10.0, 20.0, 30.0]), "train/lr": 3e-4},
        phase="offline",
        offline_step=1000,
        online_step=0,
    )
    logger.log(
        {"eval/normalized_score": np.array([40.0, 50.0, 60.0])},
        phase="online",
        offline_step=1000,
        online_step=500,
    )


def test_offline_wandb_gets_one_run_per_seed_with_group_name_config_and_tags(tmp_path, wandb_env):
    logger = RunLogger(tmp_path / "run", _config(), SEEDS)
    _log_two_phases(logger)
    logger.summary({"eval/normalized_score": np.array([41.0, 51.0, 61.0])})
    logger.close()

    runs = list(_offline_runs(wandb_env).values())
    assert len(runs) == 3
    by_seed = {}
    for parsed in runs:
        run = parsed["run"]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        by_seed[config["seed"]] = parsed
        assert run.run_group == "pointmaze-umaze/pex"
        assert run.display_name == f"pointmaze-umaze-pex-seed{config['seed']}"
        assert config["task"] == "pointmaze-umaze" and config["inv_temperature"] == 10.0
        assert config["seeds"] == SEEDS
        assert list(run.tags) == ["smoke", "pointmaze-umaze", "pex", "pex/pointmaze/umaze-v0"]
    assert sorted(by_seed) == SEEDS
    ids = json.loads((tmp_path / "run" / "wandb_ids.json").read_text())["seeds"]
    assert {p["run"].run_id for p in runs} == set(ids.values())


def test_wandb_rows_carry_each_seeds_value_on_its_phase_step_axis(tmp_path, wandb_env):
    logger = RunLogger(tmp_path / "run", _config(), SEEDS)
    _log_two_phases(logger)
    logger.summary({"eval/normalized_score": np.array([41.0, 51.0, 61.0])})
    logger.close()

    for parsed in _offline_runs(wandb_env).values():
        seed = {i.key: json.loads(i.value_json) for i in parsed["run"].config.update}["seed"]
        offline_row, online_row = parsed["history"]
        assert offline_row["offline/eval/normalized_score"] == 10.0 * (seed + 1)
        assert offline_row["offline/train/lr"] == pytest.approx(3e-4)
        assert offline_row["offline_step"] == 1000 and "eval/normalized_score" not in offline_row
        assert online_row["eval/normalized_score"] == 40.0 + 10.0 * seed
        assert online_row["online_step"] == 500
        assert parsed["metrics"]["offline/eval/normalized_score"] == "offline_step"
        assert parsed["metrics"]["eval/normalized_score"] == "online_step"
        assert parsed["summary"]["eval/normalized_score"] == 41.0 + 10.0 * seed


def test_metrics_jsonl_has_one_line_per_seed_per_call_with_nan_as_null(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = RunLogger(tmp_path / "run", _config(), SEEDS)
    logger.log(
        {"eval/normalized_score": np.array([1.0, np.nan, np.inf]), "train/lr": 0.5},
        phase="offline",
        offline_step=7,
        online_step=0,
    )
    logger.log({"train/regret": np.array([0.1, 0.2, 0.3])}, phase="online", offline_step=7, online_step=3)
    logger.close()

    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    assert [x["seed"] for x in lines] == SEEDS * 2
    assert [x["eval/normalized_score"] for x in lines[:3]] == [1.0, None, None]
    assert all(x["train/lr"] == 0.5 and x["phase"] == "offline" and x["offline_step"] == 7 for x in lines[:3])
    assert lines[4] == {
        "seed": 1,
        "phase": "online",
        "offline_step": 7,
        "online_step": 3,
        "train/regret": 0.2,
    }
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seeds"] == SEEDS and config["hidden_dims"] == [256, 256]


def test_summary_json_has_per_seed_mean_and_population_std(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with RunLogger(tmp_path / "run", _config(), SEEDS) as logger:
        logger.summary({"eval/normalized_score": np.array([10.0, 20.0, 60.0]), "time/hours": 2.0})
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["per_seed"]["2"]["eval/normalized_score"] == 60.0
    assert summary["mean"]["eval/normalized_score"] == pytest.approx(30.0)
    assert summary["std"]["eval/normalized_score"] == pytest.approx(np.sqrt((400 + 100 + 900) / 3))
    assert summary["mean"]["time/hours"] == 2.0 and summary["std"]["time/hours"] == 0.0


def test_resume_continues_the_same_wandb_runs_and_appends_metrics(tmp_path, wandb_env):
    run_dir = tmp_path / "run"
    first = RunLogger(run_dir, _config(), SEEDS)
    _log_two_phases(first)
    first.close()
    ids_before = json.loads((run_dir / "wandb_ids.json").read_text())["seeds"]

    second = RunLogger(run_dir, _config(resume="auto"), SEEDS, resume=True)
    assert sorted(r.id for r in second.wandb_runs) == sorted(ids_before.values())
    second.log(
        {"eval/normalized_score": np.array([70.0, 80.0, 90.0])},
        phase="online",
        offline_step=1000,
        online_step=1000,
    )
    second.close()

    assert json.loads((run_dir / "wandb_ids.json").read_text())["seeds"] == ids_before
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 9
    runs = _offline_runs(wandb_env)
    assert len(runs) == 6  # offline mode writes the continuation as a second file per run id
    seed0 = [p for p in runs.values() if p["run"].run_id == ids_before["0"]]
    steps = [row["_step"] for parsed in seed0 for row in parsed["history"]]
    assert steps == sorted(steps) and len(set(steps)) == 3  # W&B steps keep increasing on resume


def test_resume_after_a_crash_replays_dropped_steps_without_duplicating_them_in_wandb(tmp_path, wandb_env):
    run_dir = tmp_path / "run"
    first = RunLogger(run_dir, _config(), SEEDS)
    for step in (500, 1000, 1500):  # the crash comes after 1500; the checkpoint was at 1000
        first.log({"eval/normalized_score": np.array([1.0, 2.0, 3.0]) * step}, phase="online", offline_step=0,
                  online_step=step)
    first.close()

    second = RunLogger(run_dir, _config(resume="auto"), SEEDS, resume=True,
                       resume_keep=lambda row: row["online_step"] <= 1000)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 6  # the 1500 lines are gone
    for step in (1500, 2000):  # the replayed 1500 (W&B has it already) and a new step
        second.log({"eval/normalized_score": np.array([1.0, 2.0, 3.0]) * step}, phase="online", offline_step=0,
                   online_step=step)
    second.close()

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["online_step"] for r in rows if r["seed"] == 0] == [500, 1000, 1500, 2000]
    seed0 = json.loads((run_dir / "wandb_ids.json").read_text())["seeds"]["0"]
    history = [row for p in _offline_runs(wandb_env).values() if p["run"].run_id == seed0 for row in p["history"]]
    assert [row["online_step"] for row in history] == [500, 1000, 1500, 2000]  # each step once in W&B
    assert [row["_step"] for row in history] == [0, 1, 2, 3]


def test_resume_sets_aside_the_lines_it_replaces_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path / "run"
    with RunLogger(run_dir, _config(), SEEDS) as logger:
        for step in (1000, 2000):
            logger.log({"x": np.array([1.0, 2.0, 3.0]) * step}, phase="online", offline_step=0, online_step=step)
    # no checkpoint to resume from: every line is replaced, and none is lost
    RunLogger(run_dir, _config(resume="auto"), SEEDS, resume=True, resume_keep=lambda row: False).close()
    assert (run_dir / "metrics.jsonl").read_text() == ""
    aside = [json.loads(x) for x in (run_dir / "metrics.dropped.jsonl").read_text().splitlines()]
    assert [r["online_step"] for r in aside if r["seed"] == 0] == [1000, 2000]
    assert "2 log call(s)" in capsys.readouterr().out


def test_resume_drops_a_torn_last_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path / "run"
    with RunLogger(run_dir, _config(), SEEDS) as logger:
        logger.log({"x": np.array([1.0, 2.0, 3.0])}, phase="offline", offline_step=1, online_step=0)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"seed": 0, "phase": "onl')  # a crash in the middle of a write
    with RunLogger(run_dir, _config(), SEEDS, resume=True) as logger:
        logger.log({"x": np.array([4.0, 5.0, 6.0])}, phase="online", offline_step=1, online_step=1)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["x"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_existing_config_without_resume_raises_config_error_naming_dir_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = tmp_path / "run"
    RunLogger(run_dir, _config(), SEEDS).close()
    before = (run_dir / "config.json").read_text()
    with pytest.raises(ConfigError) as err:
        RunLogger(run_dir, _config(inv_temperature=1.0), SEEDS)
    message = str(err.value)
    assert str(run_dir) in message and "--config.resume=auto" in message and "\n" not in message
    assert (run_dir / "config.json").read_text() == before


@pytest.mark.parametrize("how", ["env_disabled", "config_disabled", "use_wandb_false"])
def test_disabled_wandb_is_a_no_op_that_still_writes_local_files(tmp_path, wandb_env, monkeypatch, how):
    cfg, use_wandb = _config(), True
    if how == "env_disabled":
        monkeypatch.setenv("WANDB_MODE", "disabled")
    elif how == "config_disabled":
        cfg["wandb"]["enabled"] = False
    else:
        use_wandb = False
    logger = RunLogger(tmp_path / "run", cfg, SEEDS, use_wandb=use_wandb)
    _log_two_phases(logger)
    logger.summary({"eval/normalized_score": np.array([1.0, 2.0, 3.0])})
    logger.close()
    assert logger.wandb_mode == "disabled" and logger.wandb_runs == []
    assert not wandb_env.exists() and not (tmp_path / "run" / "wandb").exists()
    assert not (tmp_path / "run" / "wandb_ids.json").exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 6


def test_online_mode_without_api_key_falls_back_to_offline_with_one_line_notice(tmp_path, monkeypatch, capsys):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_wandb_mode() == "offline"
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "wandb sync" in notice

    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode() == "disabled"


def test_sweep_trial_logs_one_run_with_per_seed_keys_and_seed_mean_metric(tmp_path, wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_RUN_ID", "trial42")
    logger = RunLogger(tmp_path / "run", _config(), SEEDS)
    _log_two_phases(logger)
    logger.summary({"final/normalized_score": np.array([40.0, 50.0, 90.0])})
    logger.close()

    runs = list(_offline_runs(wandb_env).values())
    assert len(runs) == 1
    parsed = runs[0]
    assert parsed["run"].run_id == "trial42"
    offline_row, online_row = parsed["history"]
    assert offline_row["seed2/offline/eval/normalized_score"] == 30.0
    assert offline_row["offline/eval/normalized_score_mean"] == pytest.approx(20.0)
    assert online_row["seed1/eval/normalized_score"] == 50.0
    assert online_row["eval/normalized_score_mean"] == pytest.approx(50.0)
    assert online_row["eval/normalized_score_std"] == pytest.approx(np.std([40.0, 50.0, 60.0]))
    assert parsed["metrics"]["eval/normalized_score_mean"] == "online_step"
    # the final summary (not the last logged eval, 50.0) is what the sweep compares
    assert parsed["summary"]["eval/normalized_score_mean"] == pytest.approx(60.0)
    assert parsed["summary"]["final/normalized_score_mean"] == pytest.approx(60.0)
    assert parsed["summary"]["seed2/final/normalized_score"] == 90.0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 6


def test_metric_with_wrong_seed_axis_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with RunLogger(tmp_path / "run", _config(), SEEDS) as logger:
        with pytest.raises(ValueError, match="shape"):
            logger.log({"x": np.zeros(2)}, phase="offline", offline_step=0, online_step=0)
        with pytest.raises(ValueError, match="phase"):
            logger.log({"x": 1.0}, phase="finetune", offline_step=0, online_step=0)


def test_a_sweep_trial_running_a_grid_logs_each_point_in_its_one_run_and_reports_the_best(tmp_path, wandb_env,
                                                                                          monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_RUN_ID", "trial7")
    with trial_scope():  # as `run_grid` holds it: the offline runs' loggers close before the online ones open
        offline = RunLogger(tmp_path / "offline", _config(grid_point="", algo="offline"), SEEDS)
        offline.close()
        loggers = [RunLogger(tmp_path / point, _config(grid_point=point), SEEDS)
                   for point in ("inv_temperature=10", "inv_temperature=100")]
        for logger, finals in zip(loggers, ([40.0, 50.0, 60.0], [70.0, 80.0, 90.0]), strict=True):
            logger.log({"eval/normalized_score": np.array(finals)}, phase="online", offline_step=0, online_step=10)
            logger.summary({"final/normalized_score": np.array(finals)})
        for logger in loggers:
            logger.close()
    runs = list(_offline_runs(wandb_env).values())
    assert len(runs) == 1 and runs[0]["run"].run_id == "trial7"  # one run per trial, as the agent expects
    summary = runs[0]["summary"]
    assert summary["inv_temperature=10/eval/normalized_score_mean"] == pytest.approx(50.0)
    assert summary["inv_temperature=100/eval/normalized_score_mean"] == pytest.approx(80.0)
    assert summary["eval/normalized_score_mean"] == pytest.approx(80.0)  # the trial's: its best point
    assert summary["grid/best_point"] == "inv_temperature=100"
    history = runs[0]["history"]
    assert history[0]["inv_temperature=10/seed2/eval/normalized_score"] == 60.0
    assert history[1]["inv_temperature=100/seed2/eval/normalized_score"] == 90.0  # the next step: none dropped
