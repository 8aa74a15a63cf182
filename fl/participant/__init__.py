"""The decentralised client of `ape run client`: one participant acting on what it reads on chain."""
