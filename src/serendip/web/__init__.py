"""A local web page to browse, label and export ranked objects (weirdness or sequence tables).

Standard library only; see :mod:`serendip.web.browse`.
"""
from .browse import LABELS, BrowseState, LabelBook, browse, make_server

__all__ = ["LABELS", "BrowseState", "LabelBook", "browse", "make_server"]
