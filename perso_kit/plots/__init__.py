"""The figures the notebooks show, one module per part of the course.

``style`` gives every figure the same look (:func:`finish` adds title, axis labels and a
takeaway line). Topic modules add their own plotting functions and are imported here.
"""
from __future__ import annotations

from . import challenges  # noqa: F401  (notebook 04)
from . import classic  # noqa: F401  (notebooks 01-03)
from . import content  # noqa: F401  (notebook 06)
from . import costs  # noqa: F401  (notebook 12)
from . import llm_roles  # noqa: F401  (notebooks 07 and 08)
from .style import MODEL_COLORS, color, finish, new_figure, stamp, who_answered

__all__ = ["MODEL_COLORS", "color", "finish", "new_figure", "stamp", "who_answered"]
