"""The backend role: orders and their life cycle, activation on the TV, pairing, bills, the
operator's BOSS, TV apps and their keys, live events of what a TV shows."""
