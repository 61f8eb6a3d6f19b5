"""Dramatiq workers that apply ledger effects exactly once."""
