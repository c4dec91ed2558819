"""Venue simulator: the order side (`matching`, `ouch_venue`) and the feed side that publishes
the venue's book as ITCH 5.0 over MoldUDP64: `itch_flow` (a seeded synthetic order-flow
generator) and `mold_publisher` (publisher, retransmission server, fault injection); see
docs/simulator.md."""
