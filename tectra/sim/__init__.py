"""Venue simulator: the order side (`matching`, `ouch_venue`) and the feed side that publishes
the venue's book as ITCH 5.0 over MoldUDP64."""
