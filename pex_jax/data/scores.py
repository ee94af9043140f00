"""Normalized score on the D4RL x100 scale: 0 = random policy, 100 = reference expert.

Reference returns come from the dataset metadata (`ref_min_score` / `ref_max_score`) when present.
The Minari `mujoco/*-v0` locomotion datasets appear to ship without them, so for hopper,
halfcheetah and walker2d we fall back to the D4RL constants (d4rl/infos.py) so that numbers stay
comparable with the PEX paper.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from pex_jax.errors import DatasetError

if TYPE_CHECKING:
    from pex_jax.data.minari import DatasetInfo

# (ref_min_score, ref_max_score) from D4RL, keyed by the locomotion env name.
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}


def d4rl_reference(dataset_id: str) -> tuple[float, float] | None:
    """D4RL (min, max) reference returns for a locomotion dataset id such as `mujoco/hopper/medium-v0`."""
    parts = [p for p in re.split(r"[/_\-]", dataset_id.lower()) if p]
    for name, refs in D4RL_REF_SCORES.items():
        if name in parts:
            return refs
    return None


def resolve_reference_scores(
    dataset_id: str, metadata: dict[str, Any]
) -> tuple[float | None, float | None, str]:
    """Pick (ref_min, ref_max, source): metadata first, else D4RL constants, else (None, None, "none")."""
    lo, hi = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if lo is not None and hi is not None:
        return float(lo), float(hi), "metadata"
    refs = d4rl_reference(dataset_id)
    if refs is not None:
        return refs[0], refs[1], "d4rl"
    return None, None, "none"


def normalized_score(returns: Any, info: DatasetInfo) -> np.ndarray:
    """100 * (R - ref_min) / (ref_max - ref_min), elementwise over `returns`."""
    lo, hi = info.ref_min_score, info.ref_max_score
    if lo is None or hi is None:
        raise DatasetError(
            f"dataset {info.dataset_id!r} has no ref_min_score/ref_max_score in its metadata and no D4RL "
            f"fallback (known: {', '.join(D4RL_REF_SCORES)}); normalized scores are undefined, "
            "report raw returns"
        )
    if hi == lo:
        raise DatasetError(
            f"dataset {info.dataset_id!r} has ref_max_score == ref_min_score ({hi}); cannot normalize"
        )
    return d4rl_normalize(returns, lo, hi)


def d4rl_normalize(returns: Any, ref_min: float, ref_max: float) -> np.ndarray:
    """100 * (R - ref_min) / (ref_max - ref_min), elementwise: D4RL's x100 scale, written once."""
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
