"""Minari dataset -> flat float32 `Transitions` plus a `DatasetInfo` describing spaces, envs and scores.

Layout conventions (see docs/data.md):
- Minari stores T+1 observations per episode, so transition t is (obs[t], act[t], r[t], obs[t+1]).
- `terminals` is 1 only for true terminations. A time-limit truncation (or a PointMaze split at
  success) keeps terminal 0 so the critic bootstraps through it. Unlike D4RL's `timeouts` layout,
  the final transition of a truncated episode has a valid next observation, so it is kept.
- `episode_ends` marks the last transition of each episode (terminated or truncated).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.registration import EnvSpec

from pex_jax.data.observations import flat_dim, flatten_observation
from pex_jax.data.scores import resolve_reference_scores
from pex_jax.errors import CorruptDatasetError, DatasetError, DatasetNotFoundError, PexError

LOCAL_NAMESPACE = "pex/pointmaze/"
_LOCOMOTION = (
    "hopper", "halfcheetah", "walker2d", "ant", "humanoid", "swimmer", "inverted", "reacher", "pusher",
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Transitions:
    """Flat offline transitions, all float32; a pytree so `jax.tree.map` moves it to device."""

    observations: Any  # (N, obs_dim)
    actions: Any  # (N, act_dim)
    rewards: Any  # (N,) raw, untransformed
    next_observations: Any  # (N, obs_dim)
    terminals: Any  # (N,) 1.0 only for true terminations
    episode_ends: Any  # (N,) 1.0 on the last transition of each episode

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """Everything downstream code needs to know about a dataset without reopening it."""

    dataset_id: str
    obs_dim: int
    act_dim: int
    observation_space: gym.Space
    action_space: gym.Space
    action_low: np.ndarray
    action_high: np.ndarray
    ref_min_score: float | None
    ref_max_score: float | None
    score_source: str  # "metadata" | "d4rl" | "none"
    env_spec: EnvSpec | None
    eval_env_spec: EnvSpec | None
    max_episode_steps: int | None  # of the eval env
    total_steps: int
    total_episodes: int
    domain: str  # "maze" | "locomotion" | "other"
    default_reward_transform: str  # "minus_one" for maze, "identity" otherwise
    source: str = "minari"  # "minari" | "local" (generated here, pex/ namespace) | "d4rl": where the data came from
    task_hint: str | None = None  # the env task a non-Minari file belongs to, e.g. "antmaze-umaze-v2"
    files: tuple = ()  # ({"path", "size", "sha256"}, ...) of the data files read, for config.json
    content_sha256: str | None = None  # of the flat transitions (`sources.load_transitions`), for config.json


def datasets_root() -> Path:
    """The directory Minari reads at call time: $MINARI_DATASETS_PATH or ~/.minari/datasets."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def dataset_dir(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def _fix_hint(dataset_id: str) -> str:
    if dataset_id.startswith("pex/antmaze/"):
        name = dataset_id[len("pex/antmaze/") :].split("-v")[0]
        return (f"generate it locally with `make data-antmaze` or `python -m pex_jax.datagen.antmaze "
                f"--task={name}` (same MINARI_DATASETS_PATH)")
    if dataset_id.startswith("pex/mujoco/"):
        env, _, level = dataset_id[len("pex/mujoco/") :].rpartition("-v")[0].partition("/")
        return (f"generate it locally with `make data-mujoco` or `python -m pex_jax.datagen.locomotion generate "
                f"--env={env} --level={level}` (same MINARI_DATASETS_PATH; needs `make mujoco-experts` first)")
    if dataset_id.startswith(LOCAL_NAMESPACE):
        maze = dataset_id[len(LOCAL_NAMESPACE) :].split("-v")[0]
        maze_arg = maze if maze in ("umaze", "medium", "large") else "all"
        return (
            f"generate it locally with `make data` or `python -m pex_jax.datagen.pointmaze --maze={maze_arg}` "
            "(same MINARI_DATASETS_PATH)"
        )
    return (
        f"download it with `minari download {dataset_id}` (needs network and `pip install \"minari[hf]\"`), "
        "or point MINARI_DATASETS_PATH at the directory that holds it"
    )


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_label() -> str:
    env_set = bool(os.environ.get("MINARI_DATASETS_PATH"))
    source = "from MINARI_DATASETS_PATH" if env_set else "MINARI_DATASETS_PATH unset"
    return f"{datasets_root()} ({source})"


def _not_found(dataset_id: str, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {dataset_id!r} not found in {_root_label()}: {reason}; fix: {_fix_hint(dataset_id)}"
    )


def _corrupt(dataset_id: str, path: Path, exc: BaseException | str) -> CorruptDatasetError:
    cause = exc if isinstance(exc, str) else _short(exc)
    regen = (
        "`python -m pex_jax.datagen.pointmaze --overwrite ...`"
        if dataset_id.startswith(LOCAL_NAMESPACE)
        else f"`minari download {dataset_id}`"
    )
    return CorruptDatasetError(
        f"dataset {dataset_id!r} at {path} is corrupt or incomplete ({cause}); "
        f"fix: `minari delete {dataset_id}` then re-create it with {regen}"
    )


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub (Minari's remote) can't be reached, or None if it can.

    One quick connection attempt, so that an offline machine fails in seconds instead of after
    huggingface_hub's ~25 s of retries.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the hub may be reachable only through the proxy; let huggingface_hub try
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {host}: {exc.strerror or exc}"
    return None


def _open_minari(dataset_id: str, download: bool | None):
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise DatasetNotFoundError(
            f"malformed dataset id {dataset_id!r}: expected (namespace/)name-vN, e.g. D4RL/antmaze/umaze-v1 "
            "or pex/pointmaze/umaze-v0"
        ) from None
    path = dataset_dir(dataset_id)
    data_path = path / "data"
    if not data_path.exists():
        if download is None:
            download = importlib.util.find_spec("huggingface_hub") is not None
        if not download:
            raise _not_found(dataset_id, "no local copy and download is off (or minari[hf] is not installed)")
        offline = _hub_unreachable()
        if offline:
            raise _not_found(dataset_id, f"no local copy and no network ({offline})")
        try:
            minari.download_dataset(dataset_id)
        except Exception as exc:  # network, unknown remote id, missing huggingface_hub...
            reason = f"no local copy and the download failed ({_short(exc, 120)})"
            raise _not_found(dataset_id, reason) from None
    try:
        return minari.load_dataset(dataset_id, download=False), path
    except FileNotFoundError:
        raise _not_found(dataset_id, "no local copy") from None
    except Exception as exc:
        raise _corrupt(dataset_id, data_path, exc) from None


def _parse_spec(text: str | None) -> EnvSpec | None:
    """EnvSpec from metadata JSON, dropping keys gymnasium >= 1.0 no longer accepts (as Minari does)."""
    if text is None:
        return None
    for old in ('"order_enforce": true,', '"apply_api_compatibility": false,', '"autoreset": false, '):
        text = text.replace(old, "")
    return EnvSpec.from_json(text)


def _domain(dataset_id: str, env_spec: EnvSpec | None) -> str:
    text = (dataset_id + " " + (env_spec.id if env_spec is not None else "")).lower()
    if "maze" in text:
        return "maze"
    if any(name in text for name in _LOCOMOTION):
        return "locomotion"
    return "other"


# Read HDF5 datasets through h5py's low-level API when the layout is the plain Minari one. Minari's
# generic reader spends ~1.5 ms per episode in high-level h5py lookups; 1M-step PointMaze has ~13k
# episodes. Tests check both readers give identical arrays.
FAST_HDF5_READER = True


def _fast_hdf5_ok(ds: Any, metadata: dict[str, Any]) -> bool:
    space = ds.observation_space
    leaves_ok = isinstance(space, gym.spaces.Box) or (
        isinstance(space, gym.spaces.Dict) and all(isinstance(s, gym.spaces.Box) for s in space.spaces.values())
    )
    return FAST_HDF5_READER and metadata.get("data_format") == "hdf5" and leaves_ok


def _iter_hdf5_episodes(data_path: Path, obs_space: gym.Space, n_episodes: int) -> Iterator[dict[str, Any]]:
    """Yield episodes as Minari's reader would (`observations` dict/array, `actions`, ...), but faster."""
    import h5py

    if isinstance(obs_space, gym.spaces.Dict):
        obs_names = {key: f"observations/{key}".encode() for key in sorted(obs_space.spaces)}
    else:
        obs_names = None

    with h5py.File(data_path / "main_data.hdf5", "r") as file:
        fid = file.id

        def read(name: bytes) -> np.ndarray:
            dset = h5py.h5d.open(fid, name)
            arr = np.empty(dset.shape, dtype=dset.dtype)
            if arr.size:
                dset.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
            return arr

        for idx in range(n_episodes):
            pre = f"episode_{idx}/".encode()
            if obs_names is None:
                obs: Any = read(pre + b"observations")
            else:
                obs = {key: read(pre + name) for key, name in obs_names.items()}
            yield {
                "id": idx,
                "observations": obs,
                "actions": read(pre + b"actions"),
                "rewards": read(pre + b"rewards"),
                "terminations": read(pre + b"terminations"),
            }


def _flatten_episodes(
    episodes: Iterable[dict[str, Any]], obs_dim: int, act_dim: int, total_steps: int
) -> dict[str, np.ndarray]:
    """Fill preallocated arrays episode by episode (vectorised within an episode)."""
    n = total_steps
    out = {
        "observations": np.empty((n, obs_dim), np.float32),
        "next_observations": np.empty((n, obs_dim), np.float32),
        "actions": np.empty((n, act_dim), np.float32),
        "rewards": np.empty((n,), np.float32),
        "terminals": np.empty((n,), np.float32),
        "episode_ends": np.zeros((n,), np.float32),
    }
    i = 0
    for ep in episodes:
        obs = flatten_observation(ep["observations"])
        t = len(ep["rewards"])
        if obs.shape != (t + 1, obs_dim) or len(ep["actions"]) != t or len(ep["terminations"]) != t:
            raise ValueError(
                f"episode {ep['id']} has {len(obs)} observations / {len(ep['actions'])} actions "
                f"for {t} rewards (expected T+1/T/T with obs_dim {obs_dim})"
            )
        if i + t > n:
            raise ValueError(f"episodes hold more steps than metadata total_steps={n}")
        if t == 0:
            continue
        sl = slice(i, i + t)
        out["observations"][sl] = obs[:-1]
        out["next_observations"][sl] = obs[1:]
        out["actions"][sl] = np.asarray(ep["actions"], np.float32).reshape(t, act_dim)
        out["rewards"][sl] = ep["rewards"]
        out["terminals"][sl] = ep["terminations"]
        out["episode_ends"][i + t - 1] = 1.0
        i += t
    if i != n:
        raise ValueError(f"episodes hold {i} steps but metadata total_steps={n}")
    return out


def load_dataset(dataset_id: str, download: bool | None = None) -> tuple[Transitions, DatasetInfo]:
    """Load a Minari dataset as flat float32 transitions plus its `DatasetInfo`.

    `download=None` downloads only when the dataset is missing locally and `huggingface_hub` is
    installed; False never downloads; True always tries when missing. Failures become one-line
    `DatasetNotFoundError` / `CorruptDatasetError` messages that name the path and the fix.
    """
    ds, path = _open_minari(dataset_id, download)
    data_path = path / "data"
    try:
        metadata = json.loads((data_path / "metadata.json").read_text())
        obs_space, act_space = ds.observation_space, ds.action_space
        if not isinstance(act_space, gym.spaces.Box):
            raise DatasetError(
                f"dataset {dataset_id!r} has a {type(act_space).__name__} action space; "
                "pex-jax needs Box actions"
            )
        obs_dim, act_dim = flat_dim(obs_space), int(np.prod(act_space.shape))
        total_steps = int(metadata["total_steps"])
        n_episodes = int(metadata["total_episodes"])
        if _fast_hdf5_ok(ds, metadata):
            episodes = _iter_hdf5_episodes(data_path, obs_space, n_episodes)
        else:
            episodes = ds.storage.get_episodes(range(n_episodes))
        arrays = _flatten_episodes(episodes, obs_dim, act_dim, total_steps)
        env_spec = ds.env_spec
        eval_spec = _parse_spec(metadata.get("eval_env_spec"))
    except PexError:
        raise
    except Exception as exc:  # h5py OSError on truncated files, KeyError on missing groups, ...
        raise _corrupt(dataset_id, data_path, exc) from None

    eval_or_train = eval_spec if eval_spec is not None else env_spec
    ref_min, ref_max, source = resolve_reference_scores(dataset_id, metadata)
    domain = _domain(dataset_id, env_spec)
    info = DatasetInfo(
        dataset_id=dataset_id,
        obs_dim=obs_dim,
        act_dim=act_dim,
        observation_space=obs_space,
        action_space=act_space,
        action_low=np.asarray(np.broadcast_to(act_space.low, act_space.shape), np.float32).reshape(-1),
        action_high=np.asarray(np.broadcast_to(act_space.high, act_space.shape), np.float32).reshape(-1),
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        score_source=source,
        env_spec=env_spec,
        eval_env_spec=eval_spec,
        max_episode_steps=eval_or_train.max_episode_steps if eval_or_train is not None else None,
        total_steps=total_steps,
        total_episodes=int(metadata["total_episodes"]),
        domain=domain,
        default_reward_transform="minus_one" if domain == "maze" else "identity",
        source="local" if dataset_id.startswith("pex/") else "minari",
    )
    return Transitions(**arrays), info


def to_device(transitions: Transitions) -> Transitions:
    """Same pytree with jnp float32 arrays on the default device."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.float32), transitions)
