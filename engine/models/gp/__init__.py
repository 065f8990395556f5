"""The parts of MFMS-GP (:mod:`engine.models.mfms_gp`, the loss model that puts them together):

- :mod:`~engine.models.gp.kernel`: the product Matern-5/2 kernel (the one implementation);
- :mod:`~engine.models.gp.means`: the pluggable prior mean (``scaling``, ``linear``, your own);
- :mod:`~engine.models.gp.likelihood`: the noise models (``count``, ``far``);
- :mod:`~engine.models.gp.binning`: checkpoints -> design points;
- :mod:`~engine.models.gp.fitting`: learning the hyperparameters;
- :mod:`~engine.models.gp.model`: the fitted GP as a BoTorch ``Model`` (the one posterior);
- :mod:`~engine.models.gp.settings`: the settings record, its defaults and presets;
- :mod:`~engine.models.gp.compat`: the two private BoTorch/GPyTorch names used, pinned by tests.
"""
