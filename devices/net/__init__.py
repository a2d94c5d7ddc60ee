"""Network: the NE2000 (DP8390) card and what it sends frames through."""
