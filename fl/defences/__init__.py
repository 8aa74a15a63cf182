"""How the honest side resists poisoning: aggregation (FedAvg) and, later, robust aggregators and review policies."""
