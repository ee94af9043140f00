"""Reward transforms applied when building training batches (the dataset keeps raw rewards).

`minus_one` follows the reference PEX/IQL setup for sparse antmaze rewards (r - 1, so every step
away from the goal costs -1 and reaching it costs 0); `identity` is used for locomotion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pex_jax.errors import ConfigError

_TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda r: r,
    "minus_one": lambda r: r - 1.0,
}

REWARD_TRANSFORMS: tuple[str, ...] = tuple(_TRANSFORMS)


def transform_rewards(rewards: Any, name: str) -> Any:
    """Apply the named transform; pure arithmetic, so numpy and jax arrays both work (also under jit)."""
    try:
        fn = _TRANSFORMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown reward transform {name!r}; valid names: {', '.join(REWARD_TRANSFORMS)}"
        ) from None
    return fn(rewards)
