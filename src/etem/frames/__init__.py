"""Movie frames: readers of every microscope format, preprocessing and the frame stream.

Modules
-------
readers     :func:`~etem.frames.readers.open_movie`: lazy (T, H, W) movies from dm3/dm4,
            MRC, TIFF, EMD, TIA ser/emi, npy, HDF5 and folders of per-frame files
files       :func:`~etem.frames.files.movie_files`: the files a movie path names (a file, a
            folder, or a glob pattern's files in natural order)
preprocess  summing, binning, count splitting, integer shifts, drift measurement
geometry    the processed frame geometry and the stream of drift-corrected frames
"""
