"""Local AntMaze datasets for the engine's runs, made with D4RL's recipe (`pex_jax.datagen.antmaze`) in a
scratch directory, and the tasks they define (the D4RL AntMaze env, D4RL time limits).

Why generated: the original D4RL files cannot be downloaded on these machines, and a run needs a dataset
to sample the offline half of its batches from. Speed depends on the dataset's shape, not its content, so
a few episodes per task do (`--engine-data-steps`; the real ones hold 1M rows, which only makes the
offline-half gathers touch more memory).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from pex_jax.data.minari import dataset_dir
from pex_jax.data.sources import load_transitions
from pex_jax.datagen.ant_controller import load_controller
from pex_jax.datagen.antmaze import generate_antmaze, recipe_for
from pex_jax.envs.task import task_for_dataset
from pex_jax.tools.bench.config import BenchConfig

# The first n tasks of a run: one of each maze first, so 3 tasks cover umaze, medium and large.
TASK_ORDER = ("umaze", "medium-play", "large-play", "umaze-diverse", "medium-diverse", "large-diverse")


class LocalAntMaze:
    """Datasets `pex/antmaze/<task>-v0` in `root`; MINARI_DATASETS_PATH points there while open."""

    def __init__(self, bc: BenchConfig, root: Path, log: Callable[[str], None] = print):
        self.bc, self.root, self.log = bc, Path(root), log
        self._saved: str | None = None
        self._controller = None
        self._infos: dict = {}
        self.generated_s = 0.0

    def __enter__(self) -> LocalAntMaze:
        self._saved = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = str(self.root)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = self._saved

    def names(self, n: int) -> list[str]:
        """The first `n` tasks, generating any dataset not made yet."""
        if n > len(TASK_ORDER):
            raise ValueError(f"at most {len(TASK_ORDER)} AntMaze tasks, asked for {n}")
        names = list(TASK_ORDER[:n])
        for name in names:
            self._ensure(name)
        return names

    def _ensure(self, name: str) -> None:
        if (dataset_dir(recipe_for(name).dataset_id) / "data").exists():
            return
        if self._controller is None:
            self._controller = load_controller()
        t0 = time.perf_counter()
        steps = max(self.bc.engine_data_steps, self.bc.engine_data_episode_steps)
        generate_antmaze(name, self._controller, steps=steps, episode_steps=self.bc.engine_data_episode_steps,
                         progress=False, parallel=min(10, steps // self.bc.engine_data_episode_steps))
        self.generated_s += time.perf_counter() - t0
        self.log(f"antmaze data: generated pex/antmaze/{name}-v0 ({steps} steps) in {time.perf_counter() - t0:.1f} s")

    def info(self, name: str):
        """(Task, DatasetInfo) of a generated task, as the runner derives them from the dataset."""
        if name not in self._infos:
            self._ensure(name)
            _, info = load_transitions(f"pex/antmaze/{name}-v0", download=False, progress=False)
            self._infos[name] = (task_for_dataset(info), info)
        return self._infos[name]
