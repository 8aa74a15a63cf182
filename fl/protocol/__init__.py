"""The contracts' rules and records mirrored in plain Python (no Ape): votes, commitments, parameters, units."""
