"""The HDF5 image-shard contract: written by ``etem simulate``, read by datasets and benchmarks.

One shard holds N images of the campaign (all images of the structures assigned to it)::

    /clean                       float32 (N, H, W)  noise-free image, expected intensity
                                                    normalised so that vacuum = 1
    /labels/class                uint8   (N, H, W)  CLASSES index per pixel (discs around columns)
    /labels/cation_occupancy     float32 (N, H, W)  atoms in the cation column at the pixel
    /labels/anion_occupancy      float32 (N, H, W)  atoms in the anion column at the pixel
    /labels/anion_fraction       float32 (N, H, W)  occupied fraction of anion sites (1 = full)
    /params/<column>             (N,)               one dataset per PARAM_COLUMNS entry
    /columns/<column>            (M,)               the image columns of every image, one
                                                    dataset per IMAGE_COLUMN_COLUMNS entry
                                                    (row image_index = index in the shard)
    attrs                        provenance (etem.provenance.provenance), contract_version,
                                 shard, n_shards, n_images

Units: lengths in Å unless the column name says nm; angles in mrad; energy in kV. To get
counts at a dose D [e/Å²]: expected counts per pixel = clean * D * pixel_size_A**2.
The index of a campaign (``simulation/index.csv``) has PARAM_COLUMNS plus ``shard`` (path
relative to the index file) and ``index_in_shard``.
"""

from __future__ import annotations

CONTRACT_VERSION = 1

#: Per-pixel classes of ``/labels/class``.
CLASSES: tuple[str, ...] = ("background", "cation", "anion", "metal")

#: Per-image parameter columns (``/params/<name>`` and the index), with units in the names.
PARAM_COLUMNS: dict[str, str] = {
    "image_id": "str: unique id, '<structure_id>_t<tilt>_z<thickness>_f<defocus>'",
    "structure_id": "str: id in the structures manifest",
    "family": "str: 'pt_on_ceo2' or 'oxide'",
    "structure_path": "str: structure file, relative to the structures manifest",
    "thickness_nm": "float: exit-plane depth along the beam [nm]",
    "defocus_nm": "float: defocus [nm], abTEM convention defocus = -C10 (positive = underfocus)",
    "tilt_x_mrad": "float: beam tilt about x [mrad]",
    "tilt_y_mrad": "float: beam tilt about y [mrad]",
    "cs_um": "float: C30 [µm]",
    "c5_mm": "float: C50 [mm]",
    "focal_spread_nm": "float: focal spread [nm]",
    "convergence_mrad": "float: beam convergence semi-angle [mrad]",
    "aperture_mrad": "float: objective aperture [mrad]",
    "energy_kv": "float: acceleration voltage [kV]",
    "pixel_size_A": "float: output pixel size [Å]",
    "slice_thickness_A": "float: multislice slice thickness [Å]",
    "sampling_A": "float: simulation sampling [Å]",
    "gpts": "int: simulation grid size [px] (square)",
    "exit_plane": "int: 0-based slice index of the exit plane (abTEM Potential exit_planes)",
    "n_slices": "int: slices of the whole structure",
    "parametrization": "str: potential parametrization",
    "projection": "str: potential projection ('infinite' or 'finite')",
    "frozen_phonons": "int: frozen phonon configurations (0 = static)",
    "frozen_phonon_sigma_A": "float: thermal displacement rms per direction [Å]",
    "detector_mtf": "str: detector MTF model",
    "seed": "int: seed of this image's random choices",
    "detector_pixel_A": "float: detector pixel [Å] resampled to pixel_size_A (NaN: the same)",
    "blur_fwhm_A": "float: Gaussian source-size/vibration/detector blur, FWHM [Å] (0: none)",
    "dose_e_per_A2": "float: dose drawn for the image [e/Å²] (NaN: none drawn)",
    "c12_nm": "float: two-fold astigmatism |C12| [nm] (abTEM C12; 0: none)",
    "phi12_deg": "float: astigmatism angle φ12 [deg] from the image x axis toward +y "
                 "(abTEM phi12): the effective defocus along φ12 is defocus_nm - c12_nm",
    "c21_nm": "float: axial coma |C21| [nm] (abTEM C21, Krivanek notation = 3 B2; 0: none)",
    "phi21_deg": "float: coma angle φ21 [deg] from the image x axis toward +y (abTEM phi21)",
    "dqe": "float: detector DQE(0) of the image's noise: counts with mean dose x clean and "
           "variance/mean 1/dqe (etem.simulation.noise.detector_counts; NaN or 0: 1, Poisson)",
    "contrast_index": "float: weak-phase contrast of the microscope, mean E sin χ over "
                      "simulation.microscope.contrast_band_per_nm, in [-1, 1] (+ bright atoms)",
    "contrast_regime": "str: 'bright', 'dark' or 'intermediate' atoms (contrast_index vs "
                       "simulation.microscope.contrast_threshold)",
}

#: Values of the parameter columns added after contract version 1 for shards (and parameter
#: rows) that lack them: readers fill them in.
PARAM_DEFAULTS: dict[str, float | str] = {
    "detector_pixel_A": float("nan"),
    "blur_fwhm_A": 0.0,
    "dose_e_per_A2": float("nan"),
    "c12_nm": 0.0,
    "phi12_deg": 0.0,
    "c21_nm": 0.0,
    "phi21_deg": 0.0,
    "dqe": float("nan"),
    "contrast_index": float("nan"),
    "contrast_regime": "",
}

STRING_COLUMNS = frozenset(
    {
        "image_id", "structure_id", "family", "structure_path", "parametrization", "projection",
        "detector_mtf", "contrast_regime",
    }
)

#: Per-image column tables in ``/columns`` of a shard: the structure's columns above the exit
#: plane, at their image positions (after the tilt shift), as drawn into the label maps.
IMAGE_COLUMN_COLUMNS: dict[str, str] = {
    "image_index": "int: index of the image in the shard",
    "column_id": "int: column id of the structure's column table",
    "x_A": "float: image position along x (image columns) [Å]",
    "y_A": "float: image position along y (image rows) [Å]",
    "element": "str: element of the column",
    "site": "str: 'cation', 'anion' or 'metal'",
    "n_atoms": "int: atoms above the exit plane",
    "n_sites": "int: lattice sites above the exit plane",
    "occupancy": "float: n_atoms / n_sites",
}

IMAGE_COLUMN_STRINGS = frozenset({"element", "site"})

# --------------------------------------------------------------------------------------------
# Synthetic movie (``etem simulate-movie``, read by the movie stage and unsupervised training)
# --------------------------------------------------------------------------------------------
MOVIE_CONTRACT_VERSION = 1

MOVIE_LAYOUT = """\
/frames        float32 (T, H, W)  noisy frames in counts (Poisson at dose_e_per_px_per_frame)
/clean         float32 (T, H, W)  expected counts per pixel (clean image * dose per pixel)
/events        int64   (E,)       frame indices where the structure changes
/event_kinds   str     (E,)       what changed at each event ('surface_loss', ...)
/drift_px      float64 (T, 2)     applied stage drift (x, y) [px]
/columns/<c>   (M,)               per-frame column tables, MOVIE_COLUMN_COLUMNS
attrs: pixel_size_A [Å], frame_time_s [s], dose_e_per_px_per_frame [e/px],
       dose_e_per_A2_per_frame [e/Å²], structure_id, defocus_nm, thickness_nm,
       contract_version, provenance (etem.provenance.provenance)
"""

#: Per-frame column tables of a synthetic movie (``/columns/<name>``).
MOVIE_COLUMN_COLUMNS: dict[str, str] = {
    "frame": "int: frame index",
    "column_id": "int: column id within the frame's structure state",
    "x_A": "float: image position along x, incl. drift [Å]",
    "y_A": "float: image position along y, incl. drift [Å]",
    "element": "str: element of the column",
    "site": "str: 'cation', 'anion' or 'metal'",
    "n_atoms": "int: atoms in the column",
    "n_sites": "int: lattice sites in the column",
    "occupancy": "float: n_atoms / n_sites",
}

MOVIE_COLUMN_STRINGS = frozenset({"element", "site"})

#: Attributes every synthetic movie carries.
MOVIE_ATTRS: dict[str, str] = {
    "pixel_size_A": "float: pixel size [Å]",
    "frame_time_s": "float: time between frames [s]",
    "dose_e_per_px_per_frame": "float: mean dose in vacuum [e/px/frame]",
    "dose_e_per_A2_per_frame": "float: dose [e/Å²/frame]",
    "structure_id": "str: structure of the manifest that was animated",
    "defocus_nm": "float: defocus [nm], abTEM convention",
    "thickness_nm": "float: exit-plane depth [nm]",
}
