"""SimpleNet (Liu et al., CVPR 2023): one module per stage of the method, then the whole model.

In the order the data flows (and the course's notebooks follow): :mod:`.config`,
:mod:`~simplenet_edu.stages.backbones` (shared), :mod:`.local_aggregation`, :mod:`.feature_adaptor`,
:mod:`.anomaly_generator`, :mod:`.discriminator`, :mod:`.loss`, :mod:`.training` (one update) and
:mod:`.batches`, :mod:`.validation` (honest stopping), :mod:`.variants` (the switchable parts),
:mod:`.folded` (the scorer at inference) and :mod:`.model` (``SimpleNet``).
"""
