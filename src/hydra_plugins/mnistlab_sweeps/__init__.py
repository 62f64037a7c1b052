"""mnistlab's Hydra glue: sweep callbacks, a grid sweeper that survives failed jobs, an Optuna sweeper.

Hydra imports every module of the ``hydra_plugins`` namespace when it starts, which registers
the sweepers' configs (``hydra/sweeper=grid``, ``hydra/sweeper=mnistlab_optuna``).
"""
