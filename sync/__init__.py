"""The sync engine: parse -> ledger -> plan -> client."""
