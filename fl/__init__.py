"""Off-chain side of stake-based federated learning (Dong et al., IEEE TAI 2024,
"Defending Against Poisoning Attacks in Federated Learning with Blockchain",
arXiv 2307.00543).

One package per part of the architecture (docs/ARCHITECTURE.md); only ``fl.chain`` imports Ape:

- ``fl.protocol``    the contracts' rules and records in plain Python (votes, commitments, parameters)
- ``fl.chain``       the adapter to the contracts: deployment and attaching, the ledgers, fast path
- ``fl.learning``    data, models, local training, evaluation, the content-addressed update store
- ``fl.defences``    aggregation (bit-exact, order-independent FedAvg, paper Eq. 1)
- ``fl.attacks``     malicious proposers and voters (paper Sec. 3.2, 5.1.2)
- ``fl.simulation``  the round loop over a ledger, the baselines, the run recorder
- ``fl.participant`` the decentralised client of ``ape run client``
- ``fl.experiments`` the sweep, the benchmark, the report and its figures

Submodules are imported explicitly (``from fl.learning.model import train_local``) so that
importing the package stays cheap and free of side effects.
"""
