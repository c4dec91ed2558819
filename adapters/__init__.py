"""Wire protocols: bytes <-> tectra.schema records, and session state machines.

Adapters import tectra.schema only, never tectra's business modules.
"""
