"""walletctl: the operators' command line."""
