"""The apply stage: a movie through denoising, columns, tracks, occupancy and events.

Entry point: :func:`etem.movies.apply.apply_movie` (the ``etem apply`` pipeline); movie
readers and frame preprocessing live in :mod:`etem.frames`.
"""
