"""Kill switch: triggers, actions, fan-out, ledger."""
