"""Evaluation: pure functions on arrays and tables.

- :mod:`~photozsom.evaluation.metrics` — MAD, NMAD, bias, outlier rate, PCO, R², PIT, CRPS;
- :mod:`~photozsom.evaluation.cells` — per-SOM-cell performance with bootstrap errors and
  significance (:class:`~photozsom.evaluation.cells.CellReport`), trends with training count;
- :mod:`~photozsom.evaluation.detection` — a flag scored as a detector: precision, recall
  and detection curves against a known truth, flags decided out of sample (cross-fitted,
  nested), Youden's J with its standard error weighted to a user's sample;
- :mod:`~photozsom.evaluation.results` — prediction tables and Table 1 with bootstrap errors.
"""
