"""Why does the policy set choose what it chooses? Q-gaps of the PEX candidates at dataset states.

    python experiments/diagnose_selection.py --run runs/study/umaze/offline --dataset pex/pointmaze/umaze-v0

Loads an offline checkpoint, adds a freshly initialised new policy as PEX does, and at 4096 dataset
states reports Q(s, offline mode) - Q(s, new-policy sample) (online critic, min of twins) and the
resulting probability of picking the offline policy under softmax(inv_temperature * Q). "P(off)<0.1" is the
share of states where the critic clearly prefers the untrained policy's action over the offline policy's.
"""

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pex_jax import checkpoint  # noqa: E402
from pex_jax.agents.algorithms import ALGORITHMS, Dims, init_offline_state, init_online_state  # noqa: E402
from pex_jax.agents.networks import gaussian_sample  # noqa: E402
from pex_jax.config import default_config  # noqa: E402
from pex_jax.data import load_dataset  # noqa: E402
from pex_jax.tools.tracking import CONFIG_FILE  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True, help="offline run dir (with offline_ckpt/)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--inv-temperature", type=float, default=10.0)
    p.add_argument("--n", type=int, default=4096)
    args = p.parse_args(argv)
    cfg = json.loads((Path(args.run) / CONFIG_FILE).read_text())
    c = default_config()
    c.hidden_dims = tuple(cfg["hidden_dims"])
    c.offline_steps = cfg["offline_steps"]
    transitions, info = load_dataset(args.dataset, download=False)
    dims = Dims.of(info)
    seeds = cfg["seeds"]
    template = jax.vmap(lambda k: init_offline_state(k, dims, c))(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    offline = checkpoint.load_offline(args.run, template, seeds, {})
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(transitions), args.n)
    obs, data_act = jnp.asarray(transitions.observations[idx]), jnp.asarray(transitions.actions[idx])
    print(f"{'seed':>4} {'mean|dQ|':>9} {'median|dQ|':>10} {'Q(s,a_off)':>10} {'Q(s,a_data)':>11} "
          f"{'P(offline)':>10} {'P(off)>0.9':>10} {'P(off)<0.1':>10}")
    for i, seed in enumerate(seeds):
        off = jax.tree.map(lambda x, i=i: x[i], offline)
        state = init_online_state(ALGORITHMS["pex"], jax.random.PRNGKey(1000 + seed), dims, c, off)
        a1, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
        mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
        a2 = gaussian_sample(jax.random.PRNGKey(seed), mean, log_std)
        q = lambda a, state=state: state.critic.apply_fn({"params": state.critic.params}, obs, a).min(0)  # noqa: E731
        q1, q2, qd = np.asarray(q(a1)), np.asarray(q(a2)), np.asarray(q(data_act))
        p_off = 0.5 * (1.0 + np.tanh(0.5 * args.inv_temperature * (q1 - q2)))  # sigmoid without overflow
        dq = np.abs(q1 - q2)
        print(f"{seed:>4} {dq.mean():9.3f} {np.median(dq):10.3f} {q1.mean():10.2f} {qd.mean():11.2f} "
              f"{p_off.mean():10.3f} {np.mean(p_off > 0.9):10.3f} {np.mean(p_off < 0.1):10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
