"""Accelerator smoke tests (`-m accel`): every algorithm compiles and takes a few steps on the default
device, and the runner goes offline -> pex end to end there.

`make gpu-check` runs these on the accelerator, in one process
(`make test TEST_PLATFORMS= TEST_WORKERS=0 ARGS="tests/test_accel.py -m accel"`); in `make test` they run on the CPU
like the rest. AntMaze-D4RL shapes (obs 29, act 8), small networks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import (
    ALGORITHMS,
    init_offline_state,
    init_online_state,
    make_offline_chunk,
    make_online_step,
)
from pex_jax.agents.iql import Batch
from pex_jax.config import default_config
from pex_jax.data.replay import ReplayBuffer
from pex_jax.device import MATMUL_PRECISION
from pex_jax.tools.bench import box_dims, synthetic_dataset

pytestmark = pytest.mark.accel

OBS, ACT, SEEDS = 29, 8, 2
DIMS = box_dims(OBS, ACT)


def _config():
    c = default_config()
    c.hidden_dims = (64, 64)
    c.batch_size = 64
    c.offline_steps = 10
    return c


def _dataset(n=1000):
    return synthetic_dataset(n, OBS, ACT)


def _keys(base):
    return jnp.stack([jax.random.PRNGKey(base + s) for s in range(SEEDS)])


def _on_default_device(tree) -> bool:
    device = jax.devices()[0]
    return all(leaf.devices() == {device} for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array))


def _finite(metrics) -> bool:
    return bool(np.all(np.asarray(metrics["finite"])))


@pytest.fixture(scope="module")
def offline():
    """Two seeds vmapped through one jitted offline chunk of 5 IQL updates, called twice."""
    c, data = _config(), _dataset()
    states = jax.jit(jax.vmap(lambda k: init_offline_state(k, DIMS, c)))(_keys(0))
    before = jax.tree.map(np.asarray, states.actor.params)
    chunk = jax.jit(jax.vmap(make_offline_chunk(c, 5), in_axes=(0, 0, None)))
    keys = _keys(1000)
    for _ in range(2):
        states, keys, metrics = chunk(states, keys, data)
    return c, data, states, before, metrics


def test_offline_iql_compiles_and_updates_on_the_default_device(offline):
    _, _, states, before, metrics = offline
    assert _finite(metrics) and _on_default_device(states)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), states.actor.params, before)
    assert max(jax.tree.leaves(moved)) > 0


@pytest.mark.parametrize("algo", ["pex", "direct", "buffer", "scratch"])
def test_online_algorithm_compiles_and_steps_on_the_default_device(algo, offline):
    c, data, offline_states, _, _ = offline
    spec = ALGORITHMS[algo]
    k = _keys(3000)
    if spec.warm_start == "none":
        states = jax.jit(jax.vmap(lambda kk: init_online_state(spec, kk, DIMS, c, None)))(k)
    else:
        states = jax.jit(jax.vmap(lambda kk, s: init_online_state(spec, kk, DIMS, c, s)))(k, offline_states)
    buffer = ReplayBuffer.create(SEEDS, OBS, ACT, 256)
    collect, update = jax.jit(make_online_step(spec, c, False)), jax.jit(make_online_step(spec, c, True))
    keys, rng = _keys(2000), np.random.default_rng(1)
    for t in range(6):
        tr = Batch(*(jnp.asarray(rng.normal(size=(SEEDS,) + sh), jnp.float32)
                     for sh in [(OBS,), (ACT,), (), (OBS,), ()]))
        buffer = buffer.insert(tr)
        step = update if t >= 2 else collect
        states, keys, actions, _, metrics = step(states, buffer.data, buffer.size, keys, tr.next_observations, data)
    assert _finite(metrics) and _on_default_device(states)
    a = np.asarray(actions)
    assert a.shape == (SEEDS, ACT) and np.all(np.isfinite(a))


def test_default_device_agrees_with_the_cpu_to_float32_rounding_at_the_runtime_precision():
    """At configure_runtime's matmul precision, an MLP loss and its gradients on the default device match the
    CPU's to float32 rounding (TF32 on a GPU would be ~1e-3 off); on a CPU this compares the CPU with itself."""
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:
        pytest.skip("JAX_PLATFORMS leaves no CPU backend to compare with")
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (256, OBS))
    w1 = jax.random.normal(k2, (OBS, 256)) / np.sqrt(OBS)
    w2 = jax.random.normal(k3, (256, 256)) / 16.0

    def loss(w1, w2, x):
        return jnp.mean(jnp.tanh(jnp.tanh(x @ w1) @ w2) ** 2)

    with jax.default_matmul_precision(MATMUL_PRECISION):
        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        here = jax.tree.map(np.asarray, f(w1, w2, x))
        there = jax.tree.map(np.asarray, f(*jax.device_put((w1, w2, x), cpu)))
    for a, b in zip(jax.tree.leaves(here), jax.tree.leaves(there), strict=True):
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b)), (jax.devices()[0], np.max(np.abs(a - b)))


def test_runner_goes_offline_then_pex_on_the_default_device(tmp_path, tiny_env, capsys):
    from pex_jax.train import run
    from tests.conftest import tiny_config

    summary = run(tiny_config(tmp_path, algo="pex", seeds="0-1", online_steps=200, online_eval_every=200))
    assert f"device {jax.devices()[0].platform}" in capsys.readouterr().out
    assert len(summary["online/normalized_score"]) == 2
    assert np.all(np.isfinite(summary["online/normalized_score"]))
