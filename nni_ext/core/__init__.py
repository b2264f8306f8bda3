"""The contracts of nni-ext, imported by everything else and importing nothing of the package.

* :mod:`.metrics`: the metric vocabulary and the one encoder/decoder of a trial's report;
* :mod:`.archive`: ``Record``/``Archive``/``ArchiveFiles``: every tuner's results, front, hypervolume
  (one reference-point rule) and the one schema of the files they write;
* :mod:`.tuner`: ``BaseTuner``: NNI's tuner interface and its bookkeeping written once;
* :mod:`.algorithms`: the one ``name -> pymoo algorithm`` catalogue.
"""
