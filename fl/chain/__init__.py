"""The chain side: the only package that imports Ape (deployment, the ledgers, the fast transaction path)."""
