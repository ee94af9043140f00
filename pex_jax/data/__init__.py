"""Dataset layer: Minari and D4RL datasets -> flat transitions, space checks, scores, replay sampling."""

from pex_jax.data.envs import check_spaces
from pex_jax.data.minari import DatasetInfo, Transitions, load_dataset, to_device
from pex_jax.data.observations import flatten_observation
from pex_jax.data.rewards import transform_rewards
from pex_jax.data.scores import normalized_score

__all__ = [
    "DatasetInfo",
    "Transitions",
    "check_spaces",
    "flatten_observation",
    "load_dataset",
    "normalized_score",
    "to_device",
    "transform_rewards",
]
