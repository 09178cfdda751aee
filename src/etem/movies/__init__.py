"""Experimental movies: readers, drift correction, streaming inference, columns and events.

Entry points: :func:`etem.movies.io.open_movie` (lazy readers of every microscope format) and
:func:`etem.movies.pipeline.apply_movie` (the ``etem apply`` pipeline).
"""
