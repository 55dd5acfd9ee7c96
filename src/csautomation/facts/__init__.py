"""Account facts: the domain model, the fact catalogue, the health model and derivation.

The seam is its modules (imported by name, so that importing the package loads no numpy):
model (Account, Signal), canonical (what a signal may hold, and the form it is stored in),
catalog (every fact a rule can read), health (the health model), derived (the derived
facts rules ask for, and `norm`), derive (one account's facts, day by day), derive_many
(the last day of many accounts at once) and anomaly (the method). numeric, grid and
columns are derive and derive_many's shared internals.
"""

__all__ = [
    "anomaly",
    "canonical",
    "catalog",
    "derive",
    "derive_many",
    "derived",
    "health",
    "model",
]
