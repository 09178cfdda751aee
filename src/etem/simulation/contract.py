"""The HDF5 image-shard contract: written by ``etem simulate``, read by datasets and benchmarks.

One shard holds N images of the campaign (all images of the structures assigned to it)::

    /clean                       float32 (N, H, W)  noise-free image, expected intensity
                                                    normalised so that vacuum = 1
    /labels/class                uint8   (N, H, W)  CLASSES index per pixel (discs around columns)
    /labels/cation_occupancy     float32 (N, H, W)  atoms in the cation column at the pixel
    /labels/anion_occupancy      float32 (N, H, W)  atoms in the anion column at the pixel
    /labels/anion_fraction       float32 (N, H, W)  occupied fraction of anion sites (1 = full)
    /params/<column>             (N,)               one dataset per PARAM_COLUMNS entry
    attrs                        provenance (etem.provenance.provenance), CONTRACT_VERSION

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
    "parametrization": "str: potential parametrization",
    "frozen_phonons": "int: frozen phonon configurations (0 = static)",
    "detector_mtf": "str: detector MTF model",
    "seed": "int: seed of this image's random choices",
}

STRING_COLUMNS = frozenset(
    {"image_id", "structure_id", "family", "structure_path", "parametrization", "detector_mtf"}
)
