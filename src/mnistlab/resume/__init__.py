"""Continuing a run, start to end: ``resume=RUN_DIR`` (the same run, in its folder) and ``ckpt_path=...`` (a new run).

``run.py`` continues a run, ``loggers.py`` its TensorBoard and CSV steps, ``checkpoint.py`` says what a
checkpoint can continue, ``sweep.py`` continues a sweep's jobs.

The steps, in the order a continued run takes them:

1. Its folder: ``conf/hydra/train.yaml`` sets ``hydra.run.dir`` and ``hydra.output_subdir`` with
   ``resume_run_dir`` / ``resume_record_dir``: ``resume=RUN_DIR`` runs in ``RUN_DIR``, with
   Hydra's record of the resuming launch in ``.hydra/resume`` beside the first's.
2. Its config (``run.continued_config``): the saved config of the run, with only ``RESUMABLE``
   overrides applied (``mnistlab.config_keys.PRESENTATION`` passed over, any other refused), set
   to continue from ``checkpoints/last.ckpt``; or, for ``ckpt_path=``,
   the checkpoint a folder stands for, refused when it has already trained ``trainer.max_epochs``.
3. Its record (``launch_record``): the hyperparameters a resumed run reports are its first launch's.
4. TensorBoard and CSV (``loggers.mark_restart``): steps logged after the checkpoint by the killed process are
   dropped, so every step appears once.
5. The state: ``trainer.fit(ckpt_path=...)`` restores weights, optimizer, loops and the training
   loader's position (read through ``mnistlab.checkpoints.SafeCheckpointIO``, ``weights_only=True``).
   The engine's own part lives with the engine: ``Classifier.on_train_start`` hands the loader its
   saved position, ``mnistlab.data.loaders.TrainBatches.state_dict`` is that position.
6. MLflow: ``conf/logger/mlflow.yaml`` passes ``resume`` to ``mnistlab.mlflow_logger.MLflowLogger``,
   which continues the run saved in the folder's ``mlflow_run.json``.

A sweep continues the same way, job by job (``sweep.jobs_to_launch``): the same ``-m`` command with the same
``hydra.sweep.dir`` keeps the finished jobs, launches each interrupted job with ``resume=<its folder>``
(steps 1 to 6, in its own folder) and runs the jobs that never started.
"""
