"""Simulation stage: abTEM HRTEM images, labels, noise and synthetic movies.

Modules: :mod:`.grid` (FFT-friendly grids), :mod:`.multislice` (potential once per
structure, one pass per tilt, exit planes), :mod:`.imaging` (CTF on exit waves, detector),
:mod:`.labels`, :mod:`.noise`, :mod:`.campaign` (all images of a structure), :mod:`.shard`
(HDF5 shards and index), :mod:`.movie` (synthetic movies), :mod:`.reference` (the plain
abTEM recipe of one image), :mod:`.contract` (data contracts), :mod:`.movie_truth` (the
truth a movie file carries).
"""
