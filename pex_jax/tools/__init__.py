"""Tools beside the runner: the benchmark (`bench`; the reference side in `ref_pex`), local reports (`report`),
W&B tracking (`tracking`)."""
