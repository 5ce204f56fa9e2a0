"""Send-time rendering: blocks and templates compiled once, rendered per reader."""
