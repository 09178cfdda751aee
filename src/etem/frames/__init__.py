"""Movie frames: readers of every microscope format, preprocessing and the frame stream.

Modules
-------
readers     :func:`~etem.frames.readers.open_movie`: lazy (T, H, W) movies from dm3/dm4,
            MRC, TIFF, EMD, TIA ser/emi, npy, HDF5 and folders of per-frame files
preprocess  summing, binning, count splitting, integer shifts, drift measurement
geometry    the processed frame geometry and the stream of drift-corrected frames
"""
