"""Evaluation of etem's outputs: image metrics, classical baselines, atomic-column finding,
likelihood maps and their calibration, unsupervised MSE, and the benchmark tables.

Modules
-------
metrics      PSNR / SSIM
baselines    classical denoisers (Gaussian filter, Anscombe + non-local means)
columns      atomic-column finding (LoG blobs + centroid / 2D Gaussian refinement)
likelihood   Mohan et al. likelihood maps and their simulation-based calibration
umse         Morales et al. unsupervised MSE / PSNR
detection    column-level precision / recall / position error
benchmark    the ``etem evaluate`` stage (tables, figures, calibration)
"""
