"""SuperSimpleNet (Rolih, Fučka, Skočaj; ICPR 2024, JIMS 2025), SimpleNet's successor, in its own folder.

:mod:`.config`, :mod:`.features` (upscaled, stacked layers), :mod:`.anomaly_generator` (noise inside
Perlin masks), :mod:`.heads` (segmentation and classification), :mod:`.loss`, :mod:`.training` and
:mod:`.model` (``SuperSimpleNet``). It reuses SimpleNet's feature adaptor, discriminator (as its
segmentation head) and noise scale.
"""
