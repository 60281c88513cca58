"""Lambda handlers: each is a thin adapter from a Step Functions Task to racecheck.core."""
