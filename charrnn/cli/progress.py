"""The training progress display, where the command line has always imported it from
(it lives in charrnn/display/progress.py, shared with ``charrnn.train``)."""

from ..display.progress import PreparationDisplay, TrainingDisplay

__all__ = ["PreparationDisplay", "TrainingDisplay"]
