"""Online storage of vector-env steps and the evaluator's episode/success accounting, on the tiny PointMaze task.

Flat maze observation layout: achieved_goal 0:2 | desired_goal 2:4 | observation 4:8.
"""

import numpy as np
import pytest

from pex_jax.agents.algorithms import ALGORITHMS
from pex_jax.data import flatten_observation, load_dataset
from pex_jax.datagen.pointmaze import ExpertPolicy
from pex_jax.envs.task import make_vector_env, task_for_dataset
from pex_jax.rollout import goal_terminals, stored_transition
from pex_jax.runner.evaluation import EvalResult, Evaluator
from tests.conftest import TINY_ID

ACHIEVED, DESIRED = slice(0, 2), slice(2, 4)
RADIUS = 0.45  # PointMaze success radius
TIME_LIMIT = 300  # PointMaze_UMaze-v3 eval limit, the task's episode length


@pytest.fixture
def tiny_task(tiny_env):
    _, info = load_dataset(TINY_ID, download=False)
    return task_for_dataset(info), info


def _as_dict(flat: np.ndarray) -> dict[str, np.ndarray]:
    return {"achieved_goal": flat[ACHIEVED], "desired_goal": flat[DESIRED], "observation": flat[4:8]}


def test_stored_transitions_keep_the_true_last_obs_one_goal_and_success_terminals(tiny_task):
    task, _ = tiny_task
    assert task.kind == "goal_maze" and task.success_radius == RADIUS
    # Env 0 drives to the goal (about 150 steps); env 1 never moves and hits the shortened time limit.
    venv = make_vector_env(task, 2, [3, 4], max_episode_steps=250)
    controller = ExpertPolicy(venv.envs[0].unwrapped.maze, seed=0)
    raw_obs, _ = venv.reset()
    obs = flatten_observation(raw_obs)
    rows = {k: [] for k in ("obs", "next", "rew", "term", "done", "success", "trunc")}
    n_success = n_trunc = 0
    try:
        for _ in range(560):
            actions = np.zeros((2, 2), np.float32)
            actions[0] = controller(_as_dict(obs[0]))
            step = venv.step(actions)
            _, _, terminated, truncated, info = step
            batch, next_obs, done, success = stored_transition(obs, actions, step, "minus_one", True)
            np.testing.assert_array_equal(batch.observations, obs)
            np.testing.assert_array_equal(batch.actions, actions)
            for i in range(2):
                if done[i]:
                    # (a) the stored next obs is the episode's last one, not the reset obs the policy sees next
                    np.testing.assert_array_equal(batch.next_observations[i],
                                                  flatten_observation(info["final_obs"][i]))
                    assert not np.allclose(batch.next_observations[i, ACHIEVED], next_obs[i, ACHIEVED])
                else:
                    np.testing.assert_array_equal(batch.next_observations[i], next_obs[i])
            n_success += int(np.sum(terminated))
            n_trunc += int(np.sum(truncated))
            for k, v in (("obs", batch.observations), ("next", batch.next_observations), ("rew", batch.rewards),
                         ("term", batch.terminals), ("done", done), ("success", success), ("trunc", truncated)):
                rows[k].append(np.asarray(v))
            obs = next_obs
    finally:
        venv.close()
    r = {k: np.concatenate(v) for k, v in rows.items()}
    assert n_success >= 2 and n_trunc >= 2, (n_success, n_trunc)
    # (b) terminal = 1 exactly where the stored last obs is within the success radius; truncations stay 0
    reached = np.linalg.norm(r["next"][:, ACHIEVED] - r["next"][:, DESIRED], axis=1) <= RADIUS
    np.testing.assert_array_equal(r["term"], reached.astype(np.float32))
    np.testing.assert_array_equal(r["success"], reached)
    assert r["term"].sum() == n_success
    assert np.all(r["term"][r["trunc"]] == 0.0) and r["trunc"].sum() == n_trunc
    np.testing.assert_array_equal(r["done"], reached | r["trunc"])
    # (c) minus_one rewards: 0 on the success step, -1 on every other step
    np.testing.assert_array_equal(r["rew"], r["term"] - 1.0)
    # (d) no stored transition pairs two goals (every reset samples a new goal position)
    np.testing.assert_array_equal(r["obs"][:, DESIRED], r["next"][:, DESIRED])


def test_goal_terminals_are_true_terminations_plus_sparse_successes_when_asked():
    terminals = np.array([0.0, 1.0, 0.0, 0.0, 1.0])
    raw = np.array([0.0, 0.0, 1.0, -1.0, 1.0])
    with_success = goal_terminals(terminals, raw, True)
    assert with_success.dtype == np.float32
    np.testing.assert_array_equal(with_success, [0.0, 1.0, 1.0, 0.0, 1.0])
    without = goal_terminals(terminals, raw, False)
    assert without.dtype == np.float32
    np.testing.assert_array_equal(without, terminals)


def _scripted(evaluator, controllers=None, choices=(0, 0)):
    """Stand-in for the jitted policy: per eval env its controller's action (zeros where it has none), per seed
    a fixed policy-set choice."""

    def policy(states, keys, t, obs):
        obs = np.asarray(obs)
        n, p, _ = obs.shape
        actions = np.zeros((n, p, 2), np.float32)
        for i in range(n * p):
            if controllers is not None and controllers[i] is not None:
                actions[i // p, i % p] = controllers[i](_as_dict(obs[i // p, i % p]))
        return actions, np.repeat(np.asarray(choices, np.int32)[:, None], p, axis=1)

    return lambda spec: policy


def _count_episodes(evaluator):
    """Record, per eval env, each step's end flag (wrapping the env's step)."""
    log = [[] for _ in evaluator.envs]
    for i, env in enumerate(evaluator.envs):
        def step(action, _inner=env.step, _i=i):
            out = _inner(action)
            log[_i].append(bool(out[2] or out[3]))
            return out

        env.step = step
    return log


def test_evaluator_counts_episodes_per_seed_and_stops_finished_envs(tiny_task):
    task, info = tiny_task
    seeds, episodes, parallel = [0, 1], 5, 2
    ev = Evaluator(task, info, seeds, episodes, parallel, config=None)
    try:
        assert len(ev.envs) == len(seeds) * parallel
        log = _count_episodes(ev)
        ev._policy = _scripted(ev, choices=(0, 1))  # seed 0 always picks the offline policy, seed 1 never
        still = ev(ALGORITHMS["pex"], None, 0)
        assert still.episodes == episodes
        # Zero actions never reach the goal: every episode runs the full time limit, and no more.
        assert still.env_steps == len(seeds) * episodes * TIME_LIMIT
        for s in range(len(seeds)):
            assert sum(sum(log[s * parallel + j]) for j in range(parallel)) == episodes
        assert all(steps[-1] for steps in log), "an env stepped after its last episode"
        np.testing.assert_array_equal(still.success_rate, [0.0, 0.0])
        np.testing.assert_array_equal(still.normalized_score, [0.0, 0.0])
        np.testing.assert_array_equal(still.returns, [0.0, 0.0])
        np.testing.assert_array_equal(still.offline_choice_rate, [1.0, 0.0])

        # A per-call episode count overrides the default.
        for steps in log:
            steps.clear()
        fewer = ev(ALGORITHMS["pex"], None, 1, episodes=3)
        assert fewer.episodes == 3 and fewer.env_steps == len(seeds) * 3 * TIME_LIMIT
        for s in range(len(seeds)):
            assert sum(sum(log[s * parallel + j]) for j in range(parallel)) == 3

        # Seed 0 reaches the goal (every episode succeeds, returns 1 and ends early), seed 1 stands still: each
        # seed's numbers come from its own envs only.
        for steps in log:
            steps.clear()
        controllers = [ExpertPolicy(env.unwrapped.maze, seed=i) if i < parallel else None
                       for i, env in enumerate(ev.envs)]
        ev._policy = _scripted(ev, controllers, choices=(1, 1))
        good = ev(ALGORITHMS["scratch"], None, 2)
        assert good.episodes == episodes
        np.testing.assert_array_equal(good.success_rate, [1.0, 0.0])
        np.testing.assert_array_equal(good.normalized_score, [100.0, 0.0])
        np.testing.assert_array_equal(good.returns, [1.0, 0.0])
        assert good.offline_choice_rate is None
        assert good.env_steps < len(seeds) * episodes * TIME_LIMIT
        assert sum(len(steps) for steps in log) == good.env_steps
        for s in range(len(seeds)):
            assert sum(sum(log[s * parallel + j]) for j in range(parallel)) == episodes
        assert all(steps[-1] for steps in log)
        # The dataset has Minari reference scores, so the return-based score is reported too.
        assert good.minari_score is not None and good.minari_score.shape == (len(seeds),)
        assert good.minari_score[0] > good.minari_score[1]
        assert ev.total_env_steps == still.env_steps + fewer.env_steps + good.env_steps
    finally:
        ev.close()


def test_eval_metrics_name_the_headline_success_and_minari_score_only_when_set():
    base = dict(normalized_score=np.array([50.0]), returns=np.array([0.5]), success_rate=np.array([0.5]),
                offline_choice_rate=None)
    plain = EvalResult(**base).metrics()
    assert {"eval/normalized_score", "eval/success_rate", "eval/return"} <= set(plain)
    assert "eval/minari_score" not in plain and "eval/offline_choice_rate" not in plain
    np.testing.assert_array_equal(plain["eval/normalized_score"], [50.0])
    full = EvalResult(**{**base, "offline_choice_rate": np.array([0.25])}, minari_score=np.array([12.0])).metrics()
    np.testing.assert_array_equal(full["eval/minari_score"], [12.0])
    np.testing.assert_array_equal(full["eval/offline_choice_rate"], [0.25])
