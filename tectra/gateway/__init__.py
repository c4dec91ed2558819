"""The order gateway: order naming at venues (`tokens`), order state, venue sessions.

`tectra.gateway.tokens` owns OUCH order tokens: durable, never-reused allocation per venue
session and the ClOrdID <-> token map with duplicate ClOrdID refusal.
"""
