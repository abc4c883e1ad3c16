"""The store: what a run's artifacts are and where they live. Its floors, lowest first: `schemas` (one pyarrow
schema per artifact), `layout` (every path), `manifest` (what a finished folder holds and the one "is it done?"
loop), `store` (fsspec reads and atomic writes), `lease` (one writer per run). Nothing here imports the rest of
`score` except its config."""
