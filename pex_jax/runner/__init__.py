"""The engine: offline pre-training, the online phase, evaluation and env workers."""
