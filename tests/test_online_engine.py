"""The online engine: env workers, background evaluation and several tasks in one loop change
nothing in the numbers, and a worker that fails stops the run with one line."""

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pex_jax.finetune import finetune
from pex_jax.pretrain import pretrain
from pex_jax.runner.evaluation import seed_chunks
from pex_jax.runner.workers import EnvPool, EnvSlot, LocalEnvs, WorkerError, reset_seed
from pex_jax.train import run
from tests.conftest import TINY2_ID, TINY_ID, tiny_config

SPEED_KEYS = {"train/env_steps_per_s"}  # wall-clock figures, the only values allowed to differ


def _rows(run_dir) -> list[dict]:
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in SPEED_KEYS} for r in rows]


def _sorted(rows: list[dict]) -> list[dict]:
    """Rows in a fixed order: background evaluation logs a round late, so only the order differs."""
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


@pytest.fixture(scope="module")
def offline_dir(tiny_minari_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine_offline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        run(tiny_config(tmp, algo="offline", seeds="0-1"))
    return tmp / "run"


def _assert_close(rows: list[dict], ref: list[dict]) -> None:
    """Same rows, steps and keys; values equal to float tolerance (same batches and keys, other
    summation order)."""
    assert [(r["seed"], r["online_step"], sorted(r)) for r in rows] == \
           [(r["seed"], r["online_step"], sorted(r)) for r in ref]
    for got, want in zip(rows, ref, strict=True):
        for k, v in want.items():
            if isinstance(v, float):
                np.testing.assert_allclose(got[k], v, rtol=1e-3, atol=1e-4, err_msg=f"{k} at {want['online_step']}")


def _summary(_, run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def _pex(tmp_path, offline_dir, name, **kw):
    return tiny_config(tmp_path / name, algo="pex", seeds="0-1", offline_checkpoint=str(offline_dir), **kw)


def test_env_workers_and_background_evaluation_give_the_in_process_metrics(tmp_path, tiny_env, offline_dir):
    base, workers, background, one_lane = (
        _summary(run(_pex(tmp_path, offline_dir, name, **kw)), tmp_path / name / "run")
        for name, kw in (("base", {}), ("workers", {"env_workers": 2}), ("background", {"eval_workers": 2}),
                         ("one_lane", {"pipeline_lanes": 1})))
    ref = _rows(tmp_path / "base" / "run")
    assert any("train/critic_loss" in r for r in ref) and any("eval/offline_choice_rate" in r for r in ref)
    # Env workers: same transitions, so the same losses, choices and evaluations, in the same order.
    assert _rows(tmp_path / "workers" / "run") == ref
    # Pipeline lanes (2 by default) vmap fewer seeds per call: the same rows up to float rounding.
    _assert_close(_rows(tmp_path / "one_lane" / "run"), ref)
    # Background evaluation, each seed in its own job (2 workers, 2 seeds): the same rows; evaluations
    # arrive one round later in the file.
    assert _sorted(_rows(tmp_path / "background" / "run")) == _sorted(ref)
    assert workers["per_seed"] == base["per_seed"] == background["per_seed"]
    assert background["timing"]["eval_workers"] == 2 and base["timing"]["eval_workers"] == 0


def test_multitask_online_run_equals_the_per_task_runs(tmp_path, two_task_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(two_task_root))

    def task(name, dataset_id, algo, **kw):
        return tiny_config(tmp_path, task=name, dataset_id=dataset_id, algo=algo, seeds="0-1", **kw)

    multi = tmp_path / "multi"
    pretrain([task("tiny-a", TINY_ID, "pex"), task("tiny-b", TINY2_ID, "pex")], multi, memory_budget=1 << 40)
    summaries = finetune([task("tiny-a", TINY_ID, "pex"), task("tiny-b", TINY2_ID, "pex")], multi)
    assert sorted(summaries) == ["tiny-a", "tiny-b"]
    for name, dataset_id in (("tiny-a", TINY_ID), ("tiny-b", TINY2_ID)):
        alone_dir = tmp_path / "alone" / name
        alone = run(task(name, dataset_id, "pex", run_dir=str(alone_dir),
                         offline_checkpoint=str(multi / name / "offline")))
        together = multi / name / "pex"
        assert {"config.json", "metrics.jsonl", "summary.json"} <= {p.name for p in together.iterdir()}
        _assert_close(_rows(together), _rows(alone_dir))
        assert json.loads((together / "summary.json").read_text())["seeds"] == alone["seeds"]


def _slots(tiny_env, n=2):
    from pex_jax.data.sources import load_transitions
    from pex_jax.envs.task import task_for_dataset

    _, info = load_transitions(TINY_ID, download=False, progress=False)
    return [EnvSlot(task_for_dataset(info), s) for s in range(n)], info


def test_env_pool_steps_exactly_as_in_process_envs(tiny_env):
    slots, info = _slots(tiny_env, 3)
    local = LocalEnvs(slots, info.obs_dim, info.act_dim)
    pool = EnvPool(slots, info.obs_dim, info.act_dim, num_workers=2, timeout=120)
    try:
        seeds = [reset_seed(s.seed, 0) for s in slots]
        np.testing.assert_array_equal(pool.reset(seeds), local.reset(seeds))
        rng = np.random.default_rng(0)
        for t in range(400):  # past the 300-step time limit: autoreset included
            actions = rng.uniform(-1, 1, (len(slots), info.act_dim)).astype(np.float32)
            a, b = pool.step(actions, t), local.step(actions, t)
            for field in ("obs", "final_obs", "reward", "terminated", "truncated", "success"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{field} at {t}")
        assert b.done.any() or t == 399
        # Lanes: two ranges in flight at once, answered in the order they were sent.
        actions = rng.uniform(-1, 1, (len(slots), info.act_dim)).astype(np.float32)
        pool.step_async(actions[:2], 0)
        pool.step_async(actions[2:], 2)
        first, second = pool.step_wait(400, 0), pool.step_wait(400, 2)
        whole = local.step(actions, 400)
        np.testing.assert_array_equal(np.concatenate([first.obs, second.obs]), whole.obs)
        np.testing.assert_array_equal(np.concatenate([first.reward, second.reward]), whole.reward)
    finally:
        pool.close()
        local.close()


def test_a_dead_env_worker_gives_one_error_naming_task_seed_and_step(tiny_env):
    slots, info = _slots(tiny_env, 2)
    pool = EnvPool(slots, info.obs_dim, info.act_dim, num_workers=2, timeout=60)
    try:
        pool.reset([0, 1])
        os.kill(pool._procs[1].pid, signal.SIGKILL)
        pool._procs[1].join(10)
        with pytest.raises(WorkerError) as e:
            pool.step(np.zeros((2, info.act_dim), np.float32), 1234)
        msg = str(e.value)
        assert "\n" not in msg and "died" in msg and "seed 1" in msg and "env step 1234" in msg
        assert "resume=auto" in msg
    finally:
        pool.close()


def test_a_hung_env_worker_gives_one_error_after_the_timeout(tiny_env):
    slots, info = _slots(tiny_env, 2)
    pool = EnvPool(slots, info.obs_dim, info.act_dim, num_workers=2, timeout=2)
    try:
        pool.reset([0, 1])
        os.kill(pool._procs[0].pid, signal.SIGSTOP)
        t0 = time.time()
        with pytest.raises(WorkerError, match=r"did not answer within 2 s while stepping at env step 7") as e:
            pool.step(np.zeros((2, info.act_dim), np.float32), 7)
        assert time.time() - t0 < 30 and "seed 0" in str(e.value)
    finally:
        pool.close(kill=True)


@pytest.mark.parametrize(("seeds", "tasks", "workers", "sizes"), [
    (10, 6, 15, [4, 3, 3]),  # the suite on 16 cores: 3 jobs per task
    (10, 1, 15, [1] * 10),  # never more jobs than seeds
    (10, 6, 1, [10]),  # fewer workers than tasks: one job per task
    (3, 2, 0, [3]),  # in-process
])
def test_evaluation_splits_each_task_into_seed_chunks_for_the_pool(seeds, tasks, workers, sizes):
    chunks = seed_chunks(seeds, tasks, workers)
    assert [c.stop - c.start for c in chunks] == sizes
    assert chunks[0].start == 0 and chunks[-1].stop == seeds
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))


def _eval_scheduler(tiny_env, timeout: float):
    """A background evaluation pool of one worker on the tiny task, and an offline state to evaluate."""
    import jax

    from pex_jax.agents.algorithms import ALGORITHMS, Dims
    from pex_jax.data.sources import load_transitions
    from pex_jax.envs.task import task_for_dataset
    from pex_jax.runner.evaluation import EvalScheduler, EvalTarget, state_template

    config = tiny_config(Path("unused"))
    _, info = load_transitions(TINY_ID, download=False, progress=False)
    dims = Dims(info.obs_dim, info.act_dim, tuple(map(float, info.action_low)), tuple(map(float, info.action_high)))
    target = EvalTarget(task_for_dataset(info), info, (0,), 1, 1, dims, config.to_dict())
    states = jax.device_get(state_template(ALGORITHMS["offline"], dims, config, 1))
    return EvalScheduler([target], workers=1, timeout=timeout), ALGORITHMS["offline"], states


def _worker_pids(scheduler) -> list[int]:
    deadline = time.time() + 60
    while time.time() < deadline and not scheduler._pool._processes:
        time.sleep(0.05)
    return list(scheduler._pool._processes)


def test_a_dead_evaluation_worker_gives_one_error_naming_task_and_step(tiny_env):
    evals, spec, states = _eval_scheduler(tiny_env, timeout=120)
    try:
        evals.submit(0, spec, states, round_index=0, episodes=1, on_result=lambda r: None, where="online step 3000")
        for pid in _worker_pids(evals):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match=r"an evaluation worker died during the evaluation of task .*, online "
                                              r"step 3000; rerun with --config.resume=auto") as e:
            evals.collect()
        assert "\n" not in str(e.value)
    finally:
        evals.close()


def test_a_hung_evaluation_worker_gives_one_error_after_the_timeout(tiny_env):
    evals, spec, states = _eval_scheduler(tiny_env, timeout=3)
    pids = []
    try:
        evals.submit(0, spec, states, round_index=0, episodes=1, on_result=lambda r: None, where="offline step 500")
        pids = _worker_pids(evals)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        t0 = time.time()
        with pytest.raises(WorkerError, match=r"did not finish the evaluation of task .*, offline step 500 within 3 s"):
            evals.collect()
        assert time.time() - t0 < 30
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            evals.close()
