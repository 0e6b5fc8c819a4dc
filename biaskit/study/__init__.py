"""The figure study: the notebooks under ``biaskit/notebooks/`` that regenerate the paper's
figures (``biaskit figures``), the models they train and the analyses they run.

- :mod:`~biaskit.study.profiles`: the study plan, per study profile (``smoke``, ``quick``, ``full``,
  ``gpu-smoke``): which runs are trained how, and every notebook's parameters.
- :mod:`~biaskit.study.plan`: training the plan into the cache (in process, per pool job, or as
  independent commands).
- :mod:`~biaskit.study.cache`: the content-addressed cache, keyed on the config *and the source*
  of the code that computes an entry.
- :mod:`~biaskit.study.recipes`, :mod:`~biaskit.study.samples`, :mod:`~biaskit.study.formulations`,
  :mod:`~biaskit.study.sampling_bias`: the analyses the notebooks share, each through the cache.
- :mod:`~biaskit.study.notebooks`, :mod:`~biaskit.study.runner`, :mod:`~biaskit.study.jobpool`,
  :mod:`~biaskit.study.heartbeat`, :mod:`~biaskit.study.kernel`: running the notebooks.
- :mod:`~biaskit.study.replication`, :mod:`~biaskit.study.verdicts`: the replication table, read
  back from a figure run's artefacts by name (:mod:`~biaskit.study.artefacts`).

Nothing is imported here: import the module you need (``from biaskit.study import recipes``).
"""
