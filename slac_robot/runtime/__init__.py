"""Running episodes: the rollout loop, its metrics and videos."""
