"""ctxpaper: the reproducible companion to Ibrahim et al. (ICASSP 2020).

"Audio-based auto-tagging with contextual tags for music": dataset construction
from playlist titles (§3), balancing and splitting (§3, §4.1), the CNN
auto-tagger (§4.1) and the sample-level weighted cross-entropy (§4.2–4.3).
Each module implements one concern; the notebooks in ``notebooks/`` import
them and hold only the story, figures and tables.
"""

__version__ = "0.1.0"
