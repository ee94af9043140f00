"""Seed-axis sharding over several devices gives the unsharded results.

Two host "devices" need `--xla_force_host_platform_device_count=2` before JAX starts, so the
comparison runs in a fresh subprocess and reports back as JSON.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

from pex_jax.sharding import can_shard, shard_seeds

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from pex_jax.agents.algorithms import ALGORITHMS, Dims, make_offline_chunk, make_online_step
from pex_jax.tools.bench import init_offline_states, init_online_states, synthetic_dataset
from pex_jax.config import default_config
from pex_jax.agents.iql import Batch
from pex_jax.data.replay import ReplayBuffer
from pex_jax.sharding import SEED_AXIS, can_shard, replicate, shard_seeds

config = default_config()
config.hidden_dims, config.batch_size = (16, 16), 8
S, obs_dim, act_dim = 4, 3, 2
dims = Dims(obs_dim, act_dim, (-1.0,) * act_dim, (1.0,) * act_dim)
dataset = synthetic_dataset(60, obs_dim, act_dim)
keys = jax.random.split(jax.random.PRNGKey(0), S)
out = {"devices": jax.device_count(), "can_shard_4": can_shard(4), "can_shard_3": can_shard(3)}

def fresh():
    return init_offline_states(keys, dims, config)  # jitted once, cheap to compile

def maxdiff(a, b):
    return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))

def split_over_seeds(tree):
    return all(x.sharding.spec == jax.sharding.PartitionSpec(SEED_AXIS) for x in jax.tree.leaves(tree))

chunk = jax.jit(jax.vmap(make_offline_chunk(config, 5), in_axes=(0, 0, None)), donate_argnums=(0,))
plain, sharded = (fresh(), keys), shard_seeds((fresh(), keys))
data = replicate(dataset)
for _ in range(2):
    plain = chunk(*plain, dataset)[:2]
    *sharded, metrics = chunk(*sharded, data)
out["offline_max_diff"] = maxdiff(plain, sharded)
out["offline_outputs_split"] = split_over_seeds(sharded) and split_over_seeds(metrics)

from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
stacked, rows = stack_datasets([dataset, synthetic_dataset(40, obs_dim, act_dim, seed=5)])
tkeys = jnp.stack([keys, jax.random.split(jax.random.PRNGKey(1), S)])  # (tasks, seeds, 2)
multi = jax.jit(make_multitask_offline_chunk(config, 5), donate_argnums=(0,))
m_plain = (init_offline_states(tkeys.reshape(-1, 2), dims, config), tkeys.reshape(-1, 2))
m_plain = jax.tree.map(lambda x: x.reshape(2, S, *x.shape[1:]), m_plain)
m_sharded = shard_seeds(jax.tree.map(jnp.copy, m_plain), axis=1)
m_data = replicate((stacked, rows))
for _ in range(2):
    m_plain = multi(*m_plain, stacked, rows)[:2]
    *m_sharded, m_metrics = multi(*m_sharded, *m_data)
out["multitask_max_diff"] = maxdiff(m_plain, m_sharded)
out["multitask_split"] = all(x.sharding.spec == jax.sharding.PartitionSpec(None, SEED_AXIS)
                             for x in jax.tree.leaves((m_sharded, m_metrics)))

spec = ALGORITHMS["pex"]
insert = jax.jit(ReplayBuffer.insert, donate_argnums=(0,))
step = jax.jit(make_online_step(spec, config, True), donate_argnums=(0,))

def online(shard):
    states = init_online_states(spec, keys, keys, dims, config)
    buffers, ks, data = ReplayBuffer.create(S, obs_dim, act_dim, 16), keys, dataset
    if shard:
        states, ks, buffers = shard_seeds((states, ks, buffers))
        data = replicate(dataset)
    rng = np.random.default_rng(1)
    actions = []
    for _ in range(3):
        obs = rng.normal(size=(S, obs_dim)).astype(np.float32)
        transition = Batch(obs, rng.uniform(-1, 1, (S, act_dim)).astype(np.float32), -np.ones(S, np.float32),
                           obs + 0.1, np.zeros(S, np.float32))
        buffers = insert(buffers, transition)
        states, ks, a, c, m = step(states, buffers.data, buffers.size, ks, obs, data)
        actions.append(np.asarray(a))
    return states, buffers, np.stack(actions)

s1, b1, a1 = online(False)
s2, b2, a2 = online(True)
out["online_state_max_diff"] = maxdiff(s1, s2)
out["online_action_max_diff"] = float(np.abs(a1 - a2).max())
out["buffer_rows_split"] = split_over_seeds(b2.data)
out["buffer_size_replicated"] = b2.size.sharding.spec == jax.sharding.PartitionSpec()
out["states_split"] = split_over_seeds(s2)
try:
    shard_seeds(jnp.zeros((3, 2)))
    out["uneven_rejected"] = False
except ValueError:
    out["uneven_rejected"] = True
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def two_device_run():
    fast_compile = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    flags = f"--xla_force_host_platform_device_count=2 {fast_compile}"  # two CPU devices
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_two_host_devices_take_an_even_seed_split_only(two_device_run):
    assert two_device_run["devices"] == 2
    assert two_device_run["can_shard_4"] and not two_device_run["can_shard_3"]
    assert two_device_run["uneven_rejected"]


def test_sharded_offline_chunks_match_the_unsharded_run_and_stay_split(two_device_run):
    assert two_device_run["offline_max_diff"] < 1e-5
    assert two_device_run["offline_outputs_split"]


def test_sharded_task_by_seed_pretraining_matches_the_unsharded_run(two_device_run):
    assert two_device_run["multitask_max_diff"] < 1e-5
    assert two_device_run["multitask_split"]  # tasks whole on every device, seeds split


def test_sharded_online_steps_match_the_unsharded_run(two_device_run):
    assert two_device_run["online_state_max_diff"] < 1e-5
    assert two_device_run["online_action_max_diff"] < 1e-5
    assert two_device_run["states_split"] and two_device_run["buffer_rows_split"]
    assert two_device_run["buffer_size_replicated"]


def test_one_device_never_shards():
    assert jax.device_count() == 1
    assert not can_shard(4)
    x = shard_seeds(jax.numpy.zeros((3, 2)))  # a one-device mesh divides any seed count
    assert x.shape == (3, 2)
