"""Models trained on the analysts' decisions, read by rules as ``model.NAME``.

* :mod:`~riskstream.models.registry`: versioned models under ``DATA_DIR/models/NAME/vN/``,
  the spec fingerprint, loading with one-line errors;
* :mod:`~riskstream.models.scoring`: one feature matrix and one predict call per batch,
  explanations (path attribution, :mod:`~riskstream.models.contrib`) for the rows that raise
  cases, drift against training;
* :mod:`~riskstream.models.quality`: AUC-PR, precision at recall, isotonic calibration, PSI.

Training (which replays events through the engine) lives in :mod:`riskstream.training`.
"""
