"""Shared fixtures: a tiny generated PointMaze dataset and small, fast configs."""

import atexit
import contextlib
import os
import re
import shutil
import tempfile

import pytest

# One XLA compilation cache for the session, shared with its xdist workers (they inherit it from the controller)
# and with the processes the tests start: the suite builds the same tiny programs again and again (new closures,
# CLI runs), and compiling them dominates its time.
# Programs are keyed by their HLO, options and jax version, so a hit runs exactly what a compile would give.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set it to keep the cache between runs
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pex-jax-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # tiny programs too
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# `make test ARGS='-k x'` puts its command-line variables (ARGS, TEST_WORKERS, ...) into the environment and
# MAKEFLAGS, so the tests' own `make antmaze ...` calls would take `-k x` as the run's flags. The suite runs as if
# pytest were started directly: those variables and make's own are dropped.
_cmdline = re.split(r"(?<!\\) ", os.environ.get("MAKEFLAGS", "").partition(" -- ")[2])
for _var in [a.split("=", 1)[0] for a in _cmdline if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", a)] + [
        "MAKEFLAGS", "MFLAGS", "MAKELEVEL"]:
    os.environ.pop(_var, None)


@pytest.fixture(scope="session", autouse=True)
def no_maze_xml_left_behind():
    """Gymnasium-Robotics writes every AntMaze's model to `<tmp>/ant_maze<time>.xml` and never removes it. The
    product's env builders delete theirs; envs the tests build directly (and Minari's, from them) would leave
    dozens per run, so the session removes the ones written since it started (a second old: already loaded)."""
    import glob
    import time

    pattern = os.path.join(tempfile.gettempdir(), "ant_maze*.xml")
    before = set(glob.glob(pattern))
    yield
    time.sleep(1.0)  # the session's own files are then all a second old; a live process's newer one is kept
    for path in set(glob.glob(pattern)) - before:
        with contextlib.suppress(OSError):
            if time.time() - os.path.getmtime(path) > 1.0:
                os.remove(path)


TINY_ID = "pex/pointmaze/tiny-v0"
TINY2_ID = "pex/pointmaze/tiny2-v0"


@pytest.fixture(scope="session")
def tiny_minari_root(tmp_path_factory):
    """A 3000-step PointMaze UMaze dataset generated once per session in its own Minari root."""
    from pex_jax.datagen.pointmaze import generate_pointmaze

    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        generate_pointmaze(maze="umaze", steps=3000, noise=0.5, seed=0, dataset_id=TINY_ID, ref_episodes=2,
                           progress=False)
    return root


@pytest.fixture(scope="session")
def two_task_root(tiny_minari_root):
    """The session's tiny dataset plus a shorter second one (2000 steps, other seed) beside it."""
    from pex_jax.datagen.pointmaze import generate_pointmaze

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        generate_pointmaze(maze="umaze", steps=2000, noise=0.5, seed=1, dataset_id=TINY2_ID, ref_episodes=2,
                           progress=False)
    return tiny_minari_root


@pytest.fixture
def tiny_env(tiny_minari_root, monkeypatch, tmp_path):
    """Point Minari at the tiny dataset and keep W&B off for this test."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "disabled"))
    return tiny_minari_root


def tiny_config(tmp_path, **overrides):
    """A config that runs every phase in seconds: small nets, few steps, one eval episode."""
    from pex_jax.config import default_config

    c = default_config()
    c.task = "pointmaze-tiny"
    c.dataset_id = TINY_ID
    c.expectile = 0.9
    c.hidden_dims = (32, 32)
    c.batch_size = 64
    c.offline_steps = 200
    c.offline_eval_every = 100
    c.updates_per_call = 100
    c.online_steps = 300
    c.learning_starts = 100
    c.online_eval_every = 150
    c.log_every = 100
    c.eval_episodes = 1
    c.eval_parallel_envs = 1
    c.env_workers = 0  # in-process envs and evaluation: the engine tests turn workers on
    c.eval_workers = 0
    c.buffer_capacity = 1000
    c.download = False
    c.progress = False
    c.wandb.enabled = False
    c.run_dir = str(tmp_path / "run")
    for k, v in overrides.items():
        c[k] = v
    return c
