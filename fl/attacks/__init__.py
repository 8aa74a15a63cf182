"""Malicious behaviours: poisoned proposals (flipped labels, kept close to the global model) and dishonest votes."""
