"""Running episodes: the rollout loop, its metrics, videos and plots, and stopping on signals."""
