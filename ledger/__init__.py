"""The double-entry ledger: money, accounts, transfers and the rules that guard them."""
