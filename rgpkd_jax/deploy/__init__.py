"""Deployment without JAX: a predictor for exported ONNX models that needs numpy, Pillow and
onnxruntime, and nothing of the model code.

    python -m rgpkd_jax.deploy --model W/export/model.onnx --input path/to/image_or_folder

``images`` (preprocessing and heat maps), ``scoring`` (what a prediction run writes) and
``artefact`` (the sidecar of an exported model) are shared with the JAX side: training and
``--mode predict`` use the same code, so the two cannot drift. ``predictor`` holds the
onnxruntime session. Nothing here imports JAX, flax or a module of ours that does; this
``__init__`` imports nothing, so that the training side can use ``images`` without onnxruntime.
"""
