"""The data contract of the structures stage: written by ``etem structures``, read downstream.

Files
-----
``structures/shard_NNN/<structure_id>.extxyz``
    One structure, readable by ``ase.io.read`` (extended XYZ). Use
    :func:`etem.structures.io.read_structure` to also get the vacancy sites.
    Cell: rectangular, ``pbc = (True, True, False)``; x, y = the image field of view
    (config ``cell_xy_A``), the beam along +z entering at z = 0, vacuum above and below along z.
    Per-atom arrays: :data:`ATOM_ARRAYS`. ``atoms.info``: :data:`INFO_KEYS` (the recipe).
``structures/shard_NNN/manifest.csv`` and the gathered ``structures/manifest.csv``
    One row per structure, :data:`MANIFEST_COLUMNS` (``path`` and ``columns_path`` relative to
    the manifest's folder); a plain CSV, its provenance in the sidecar
    ``manifest.csv.meta.json`` (:func:`etem.io.metadata_path`). Read it with
    :func:`etem.structures.library.read_manifest` (string columns kept as str), or
    ``pandas.read_csv(path)``.
``structures/shard_NNN/columns.h5``
    The projected column table of every structure over its full depth, one group per
    ``structure_id`` with one dataset per :data:`COLUMN_TABLE_COLUMNS` entry (units in the
    dataset attribute ``unit``); provenance in the file attributes. Depth-resolved tables
    (exit plane at depth t) come from :func:`etem.structures.column_table.column_table`.

Frames and units: lengths in Å (``_nm`` in the name: nm), the image frame = the cell frame:
x to the right (image column index = x / pixel size), y down the image (image row index =
y / pixel size), z along the beam. In Pt/CeO2 structures the support fills the bottom of the
image (large y) and the particle sits above it (smaller y), with vacuum at the top.
"""

from __future__ import annotations

CONTRACT_VERSION = 1

#: Families of structures.
FAMILIES: tuple[str, ...] = ("pt_on_ceo2", "oxide")

#: Label class of each element (classes of ``etem.simulation.contract.CLASSES``).
SITE_OF_ELEMENT: dict[str, str] = {
    "Pt": "metal", "Ce": "cation", "Sr": "cation", "Ti": "cation", "O": "anion",
}

#: Region codes of the per-atom array ``region``.
REGIONS: dict[int, str] = {0: "support_or_oxide", 1: "particle", 2: "adatom"}

#: Per-atom arrays stored in the extxyz files.
ATOM_ARRAYS: dict[str, str] = {
    "region": "int: 0 = support / oxide crystal, 1 = Pt particle, 2 = adatom",
    "valence": "int: formal charge state label, e.g. Ce 4 or 3 (Ce3+ = reduced), O -2, Pt 0",
}

#: Keys of ``atoms.info`` (the recipe); recipe parameters also in ``recipe`` (JSON).
INFO_KEYS: dict[str, str] = {
    "structure_id": "str: unique id ('pt0001', 'ox0001')",
    "family": "str: one of FAMILIES",
    "material": "str: 'Pt/CeO2', 'CeO2' or 'SrTiO3'",
    "zone_axis": "str: beam direction in crystal Miller indices, e.g. '[110]'",
    "seed": "int: seed of this structure's random choices",
    "recipe": "str: JSON of every recipe parameter (etem.structures.recipes.Recipe)",
    "vacancy_xyz": "float[3N]: flattened positions of the N vacant sites [Å] (absent if N=0)",
    "vacancy_symbols": "str: space-separated element of each vacant site (absent if N=0)",
}

#: Manifest columns and their meaning / units.
MANIFEST_COLUMNS: dict[str, str] = {
    "structure_id": "str: unique id",
    "family": "str: 'pt_on_ceo2' or 'oxide'",
    "path": "str: extxyz file, relative to the manifest's folder",
    "columns_path": "str: HDF5 column-table file, relative to the manifest's folder",
    "n_atoms": "int: number of atoms",
    "material": "str: 'Pt/CeO2', 'CeO2' or 'SrTiO3'",
    "zone_axis": "str: beam direction, Miller indices of the support / oxide crystal: '[110]'",
    "particle_shape": "str: Pt particle shape, 'none' for oxides",
    "particle_size_nm": "float: target particle diameter [nm], 0 for oxides",
    "particle_n_atoms": "int: Pt atoms (particle + adatoms), 0 for oxides",
    "support_facet": "str: CeO2 facet under the particle, e.g. '(111)'; 'none' for oxides",
    "surface_facet": "str: facet of the free surface seen edge-on (support or oxide), '(111)'",
    "thickness_nm": "float: extent of the crystal along the beam [nm]",
    "thickness_unit_cells": "int: repeats of the crystal along the beam",
    "vacancy_mode": "str: 'none', 'random', 'clustered', 'surface', 'column'",
    "n_vacancies": "int: vacant lattice sites (removed atoms) recorded in the file",
    "n_reduced_ce": "int: Ce atoms labelled Ce3+",
    "defects": "str: '+'-joined defect kinds ('twin', 'step', 'adatom', ...), 'none' if none",
    "rotation_deg": "float: particle rotation about the beam [deg]",
    "tilt_deg": "float: particle tilt about x (off zone axis) [deg]",
    "strain_percent": "float: radial strain of the particle [%]",
    "interface_gap_A": "float: smallest particle-support atom distance [Å], NaN for oxides",
    "seed": "int: seed of this structure's random choices",
    "cell_x_A": "float: cell along x = field of view width [Å]",
    "cell_y_A": "float: cell along y = field of view height [Å]",
    "cell_z_A": "float: cell along the beam, incl. vacuum [Å]",
}

#: Columns of the projected column table (see etem.structures.column_table.column_table).
COLUMN_TABLE_COLUMNS: dict[str, str] = {
    "column_id": "int: column index, stable for any depth range of the same structure",
    "x_A": "float: column position along x (image columns) [Å]",
    "y_A": "float: column position along y (image rows, downwards) [Å]",
    "element": "str: element of the column's sites",
    "site": "str: label class 'cation', 'anion' or 'metal'",
    "n_sites": "int: lattice sites in the column within the depth range (atoms + vacancies)",
    "n_atoms": "int: atoms in the column within the depth range",
    "n_vacancies": "int: vacant sites in the column within the depth range",
    "occupancy": "float: n_atoms / n_sites",
    "n_reduced": "int: atoms labelled reduced (Ce3+) in the column within the depth range",
    "z_min_A": "float: smallest z of the column's sites in the range [Å]",
    "z_max_A": "float: largest z of the column's sites in the range [Å]",
}

#: Units of the column-table datasets (HDF5 attribute ``unit``).
COLUMN_UNITS: dict[str, str] = {
    "x_A": "Å", "y_A": "Å", "z_min_A": "Å", "z_max_A": "Å", "occupancy": "1",
}
