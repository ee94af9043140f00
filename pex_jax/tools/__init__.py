"""Helpers that are not part of training: the reference-PEX side of the benchmark (`ref_pex`)."""
