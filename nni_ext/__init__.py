"""nni-ext: multi-objective neural architecture search on Microsoft NNI.

Four kinds of part (see DESIGN.md): search spaces (:mod:`nni_ext.spaces`), objectives
(:mod:`nni_ext.cost` and trial metrics), tuners (:mod:`nni_ext.tuners`) and trainers/trials
(:mod:`nni_ext.trials`), plus data loading (:mod:`nni_ext.data`).
"""
__version__ = "0.1.0"
