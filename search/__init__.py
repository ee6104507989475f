"""search: epsilon-constrained Bayesian optimisation of the backbone per device profile.

Receives a cost model and a fidelity evaluator through small protocols; never measures directly.
"""
