"""The stages of a round, each `read -> compute -> write`; `score.runner` runs them behind manifests."""
