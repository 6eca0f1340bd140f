"""The tuning search: rekko's blend, recency and co-watching settings fitted on a validation split.

One search (:mod:`rekko.tuning.search`) with two callers and two budgets:

* the pipeline's own tuning (:mod:`rekko.tuning.auto`), run by the
  orchestrator (:mod:`rekko.build`) between the content stages and the
  co-watching stage, on a split carved from the pipeline's input;
* ``rekko tune`` (:mod:`rekko.evaluation.cli`), on the train part of an
  evaluation protocol, which then applies what it chose to the artifact set
  (:mod:`rekko.tuning.apply`).

The search takes a :class:`~rekko.tuning.data.TrainPart` (the train part's
movies, interactions and similarities) and validation pairs; it imports the
pipeline's stage functions and the ranking kernel, never the orchestrator or
the evaluation package. Its budget is counted in work (users ranked, rows
refitted), so the same input gives the same choice on any machine at any load.
"""
