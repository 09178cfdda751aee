"""Networks: U-Net denoiser, blind-spot multi-frame denoiser, occupancy segmenter, I/O."""
