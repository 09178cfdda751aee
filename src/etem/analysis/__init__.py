"""Algorithms shared by the evaluation stage and ``etem apply`` (plain numpy/scipy).

Modules
-------
metrics      PSNR / SSIM (etem's convention and Mohan et al.'s)
baselines    classical denoisers (Gaussian filter, Anscombe + non-local means)
columns      atomic-column finding (LoG blobs + centroid / 2D Gaussian refinement)
likelihood   Mohan et al.'s likelihood maps and their calibration into confidence
calibration  simulated-vacuum null distributions, false-alarm and reliability tables
matching     found-to-true column matching, precision / recall / position error
umse         Morales et al.'s unsupervised MSE / PSNR
"""
