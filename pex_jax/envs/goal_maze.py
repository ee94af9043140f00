"""Gymnasium-Robotics mazes (PointMaze, AntMaze) as fixed-cell goal-reaching tasks that end at the goal.

Gymnasium-Robotics builds its mazes as continuing tasks: the episode never ends at the goal, the
sparse reward keeps paying inside a 0.45 radius, and with `reset_target=True` the goal moves on
success, *after* the observation was built, so one transition pairs the old goal's observation with
the new goal's reward. D4RL's AntMaze (and the PEX reference) instead ends the episode at the goal
with return 1. `GoalMazeTask` gives the Gymnasium mazes those semantics: one start cell and one goal
cell ('r' and 'g' in `maze_map`), reward 1 and `terminated` when the torso is within
`success_radius` of the goal, 0 otherwise, and the time limit as truncation. The goal never moves
within an episode, so no stored transition can mix two goals.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

Cell = tuple[int, int]


def walls(maze_map: Any) -> tuple[tuple[bool, ...], ...]:
    """The wall pattern of a maze map (1 = wall; 0, 'r', 'g', 'c' = free)."""
    return tuple(tuple(cell == 1 for cell in row) for row in maze_map)


def cells(maze_map: Any, marker: str) -> list[Cell]:
    """(row, col) of every cell of `maze_map` holding `marker` ('r', 'g' or 'c')."""
    return [(i, j) for i, row in enumerate(maze_map) for j, cell in enumerate(row) if cell == marker]


def with_cells(maze_map: Any, reset_cell: Cell, goal_cell: Cell) -> tuple[tuple[Any, ...], ...]:
    """The walls of `maze_map` with exactly one 'r' (reset) and one 'g' (goal) cell."""
    out = [[1 if cell == 1 else 0 for cell in row] for row in maze_map]
    for (i, j), marker in ((reset_cell, "r"), (goal_cell, "g")):
        if out[i][j] == 1:
            raise ValueError(f"cell {(i, j)} is a wall of the maze; cannot put {marker!r} there")
        out[i][j] = marker
    return tuple(tuple(row) for row in out)


class GoalMazeTask(gym.Wrapper):
    """Reward 1 and termination at `‖achieved_goal − desired_goal‖ ≤ success_radius`; `info["success"]`."""

    def __init__(self, env: gym.Env, success_radius: float, end_on_success: bool = True):
        super().__init__(env)
        self.success_radius = float(success_radius)
        self.end_on_success = bool(end_on_success)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        info["success"] = False
        return obs, info

    def step(self, action: Any):
        obs, _, _, truncated, info = self.env.step(action)
        distance = float(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
        success = distance <= self.success_radius
        info["success"], info["distance"] = success, distance
        terminated = success and self.end_on_success
        return obs, float(success), terminated, bool(truncated) and not terminated, info
