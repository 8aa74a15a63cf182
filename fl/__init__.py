"""Off-chain side of stake-based federated learning (Dong et al., IEEE TAI 2024,
"Defending Against Poisoning Attacks in Federated Learning with Blockchain",
arXiv 2307.00543).

Plain Python + torch, no Ape imports (only ``fl/chain/ledger.py`` talks to the contracts):

- ``fl.learning.data``       Lending Club loading, IID federated split, per-client validation
- ``fl.learning.model``      the paper's 3-layer MLP, local training, evaluation, scores
- ``fl.defences.aggregate``  bit-exact, order-independent FedAvg (paper Eq. 1)
- ``fl.learning.store``      canonical safetensors bytes, sha256 hashes, content-addressed store
- ``fl.attacks.behaviours`` honest and malicious proposers/voters (paper Sec. 3.2, 5.1.2)

Submodules are imported explicitly (``from fl.learning.model import train_local``) so that
importing the package stays cheap and free of side effects.
"""
