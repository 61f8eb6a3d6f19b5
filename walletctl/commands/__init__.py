"""walletctl commands, one module each."""
