"""The simulated federation: the round loop over a ledger, the baselines, the run recorder and its per-run plots."""
