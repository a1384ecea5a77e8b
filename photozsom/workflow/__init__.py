"""The book's workflow: run directories, stages and the experiments the chapters run.

- :mod:`~photozsom.workflow.pipeline` — :class:`~photozsom.workflow.pipeline.Run`, the
  stages with declared inputs and outputs, scale presets and provenance;
- :mod:`~photozsom.workflow.book` — executes the chapters with papermill and builds the book;
- :mod:`~photozsom.workflow.validation` — the flag scored against truth, nested
  cross-fitting, the map comparison;
- :mod:`~photozsom.workflow.ablation` — the encoder ablation.
"""
