"""Gift cards and e-wallets: money balances on a double-entry ledger of their own."""
