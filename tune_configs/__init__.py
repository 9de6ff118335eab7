"""Ray Tune experiment presets per environment and algorithm."""
