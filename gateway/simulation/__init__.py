"""Policy simulation over the ledger: "what would this YAML have cost?"

:mod:`~gateway.simulation.candidate` validates and compiles a candidate config (no secrets),
:mod:`~gateway.simulation.rows` reads the ledger rows, :mod:`routing.simulate` replays them
(pure), :mod:`~gateway.simulation.report` makes the JSON and :mod:`~gateway.simulation.render`
the CSV and text tables. ``POST /admin/simulate``, ``switchyard simulate`` and the dashboard's
"What if" page all go through :func:`simulate_ledger`.
"""

from gateway.simulation.candidate import parse_candidate, simulation_policy
from gateway.simulation.render import TABLES, simulation_csv, simulation_table
from gateway.simulation.report import simulate_ledger

__all__ = ["TABLES", "parse_candidate", "simulate_ledger", "simulation_csv", "simulation_policy", "simulation_table"]
