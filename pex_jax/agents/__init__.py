"""Agents as pure functions over pytrees: IQL and SAC updates, the policy set, the algorithms built on them."""
