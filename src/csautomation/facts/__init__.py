"""Account facts: the domain model, the fact catalogue, the health model and derivation."""
