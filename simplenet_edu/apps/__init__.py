"""The applications on top of the library, which nothing in the library imports: the command line
(:mod:`.cli`, :mod:`.options`), the benchmark runner (:mod:`.benchmark`) and the ablation (:mod:`.ablation`)."""
