"""TBRM and the paper's PPO/GRPO baselines at scale on verl 0.9.1 (optional extra ``tbrm-bench[verl]``).

- ``tbrm_verl.plugin``: exact TBRM inside verl (engine override + loss dispatcher), loaded by verl through the
  ``verl.plugins`` entry point in every process that imports verl.
- ``tbrm_verl.reward``: verl's custom reward function, this suite's verifier (the grader of ``tbrm eval``).
- ``tbrm_verl.recipes``: a paper recipe -> verl's Hydra overrides, checked with verl's own config classes.
- ``tbrm_verl.data``: DAPO-Math-17k / benchmark problems -> verl's RL parquet.
- ``tbrm_verl.checkpoints``: verl FSDP checkpoints -> HF folders that ``tbrm eval`` scores.
- ``tbrm_verl.cli``: ``tbrm verl RECIPE``.

Nothing outside this package imports verl; nothing outside it imports this package except the lazy
``tbrm verl`` dispatch in ``tbrm/cli.py``. Importing this package does not import verl.
"""
