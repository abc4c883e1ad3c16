"""The stages of a round, one module each, `StageContext in -> statistics out`: read the declared inputs,
compute, write the declared outputs. Their contracts are in `score.pipeline`; `score.runner` runs them."""
