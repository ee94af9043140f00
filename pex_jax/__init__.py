"""pex-jax: offline-to-online RL with Policy Expansion, vmapped over seeds."""

__version__ = "0.1.0"
