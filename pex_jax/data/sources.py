"""One entry point for every data source a run can name in `--config.dataset_id`.

- `d4rl:<task id>` or `d4rl:<path to a D4RL v2 hdf5>`: the original D4RL files (`pex_jax.data.d4rl`):
  AntMaze, paired with the D4RL AntMaze env, and locomotion, evaluated in Gymnasium's -v4 envs.
- anything else: a Minari dataset id (`D4RL/antmaze/umaze-v1`, `pex/pointmaze/umaze-v0`, ...).
"""

from __future__ import annotations

import dataclasses

from pex_jax.checkpoint import arrays_sha256
from pex_jax.data.d4rl import is_d4rl_id
from pex_jax.data.minari import DatasetInfo, Transitions, load_dataset


def transitions_sha256(data: Transitions) -> str:
    """sha256 of the flat transitions: what a run trains on, whatever file or generator they came from."""
    return arrays_sha256({field.name: getattr(data, field.name) for field in dataclasses.fields(data)})


def load_transitions(dataset_id: str, download: bool | None = None, progress: bool = True
                     ) -> tuple[Transitions, DatasetInfo]:
    """Flat transitions and their `DatasetInfo` (with the transitions' sha256, which config.json records so
    that a resume notices other data under the same id), from whichever source `dataset_id` names."""
    if is_d4rl_id(dataset_id):
        from pex_jax.data.d4rl import load_d4rl

        data, info = load_d4rl(dataset_id, download=bool(download) if download is not None else True,
                               progress=progress)
    else:
        data, info = load_dataset(dataset_id, download=download)
    return data, dataclasses.replace(info, content_sha256=transitions_sha256(data))
