"""Recommendations: co-occurrence counted from ingest (`cooccurrence.py`, from the
signals of `signals.py`), the serve-time ranking (`recommender.py`) and the optional
upstream model (`upstream.py`). The reader view (app/reader/view.py) applies the
exclusions and the fallbacks."""
