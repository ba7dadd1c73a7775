"""Pure routing logic: request signals -> policy -> a ranked, explainable plan.

Nothing in this package performs I/O or imports ``gateway`` or ``providers``: it takes plain
data (the request body, the deployment catalogue, a health snapshot, the caller's project) and
returns a :class:`~routing.types.Plan` with the reasons for every decision.
"""
