"""Projected column tables: counts, vacancies, depth ranges, Ce3+ labels."""

from __future__ import annotations

import numpy as np
import pytest

from etem.structures.column_table import column_table
from etem.structures.contract import COLUMN_TABLE_COLUMNS
from etem.structures.io import set_vacancy_sites, vacancy_sites
from tests.structures_fixtures import ceo2_slab, recipe


def test_ceo2_slab_columns_hold_one_site_per_unit_cell():
    atoms = ceo2_slab(n_uc=4)
    table = column_table(atoms)
    assert list(table.columns) == list(COLUMN_TABLE_COLUMNS)
    assert set(table["element"]) == {"Ce", "O"}
    assert (table["n_sites"] == 4).all() and (table["n_atoms"] == 4).all()
    assert (table["n_vacancies"] == 0).all() and (table["occupancy"] == 1.0).all()
    n_ce = (table["element"] == "Ce").sum()
    assert (table["element"] == "O").sum() == 2 * n_ce  # fluorite: 2 O columns per Ce column
    assert table.loc[table.element == "Ce", "site"].eq("cation").all()
    assert table.loc[table.element == "O", "site"].eq("anion").all()
    assert table["n_sites"].sum() == len(atoms)
    # Ce columns along [110] are 3.826 Å / 2 ... apart in projection: never closer than 1.9 Å
    ce = table[table.element == "Ce"][["x_A", "y_A"]].to_numpy()
    d = np.linalg.norm(ce[:, None] - ce[None], axis=2) + np.eye(len(ce)) * 99
    assert d.min() > 3.0  # fcc [110] projection: nearest columns 0.612 a = 3.31 Å


def test_removing_one_oxygen_changes_exactly_its_column():
    atoms = ceo2_slab(n_uc=4)
    before = column_table(atoms)
    o = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "O")
    k = int(o[len(o) // 2])
    site = atoms.positions[k].copy()
    del atoms[k]
    set_vacancy_sites(atoms, site[None], ["O"])
    after = column_table(atoms)
    assert len(after) == len(before)
    assert np.array_equal(after["column_id"], before["column_id"])
    changed = after[after["n_vacancies"] > 0]
    assert len(changed) == 1
    row = changed.iloc[0]
    assert row["element"] == "O" and row["n_vacancies"] == 1 and row["n_atoms"] == 3
    assert row["occupancy"] == pytest.approx(0.75)
    assert np.hypot(row["x_A"] - site[0], row["y_A"] - site[1]) < 0.1
    others = after["column_id"] != row["column_id"]
    assert after.loc[others, "n_atoms"].equals(before.loc[others, "n_atoms"])


def test_depth_range_counts_atoms_before_the_exit_plane():
    atoms = ceo2_slab(n_uc=5)
    full = column_table(atoms)
    ce = atoms.positions[np.array(atoms.get_chemical_symbols()) == "Ce"]
    z_levels = np.unique(np.round(ce[:, 2], 3))
    # exit plane between the 2nd and 3rd Ce of every column: 2 Ce per column seen
    repeat = 5.411 / np.sqrt(2)
    t = ce[:, 2].min() + 1.75 * repeat  # Ce layers at 0, c/2, c, 3c/2 (two sublattices)
    part = column_table(atoms, z_max_A=t)
    ce_part = part[part.element == "Ce"]
    assert (ce_part["n_sites"] == 2).all()
    assert set(part["column_id"]) <= set(full["column_id"])
    merged = part.merge(full, on="column_id", suffixes=("", "_full"))
    assert np.allclose(merged["x_A"], merged["x_A_full"])
    assert (merged["element"] == merged["element_full"]).all()
    assert len(z_levels) == 10  # two Ce layers per repeat along [110]
    assert len(column_table(atoms, z_max_A=0.0)) == 0


def test_vacancies_and_ce3_labels_are_counted_per_column():
    atoms = ceo2_slab(n_uc=3, mode="random", fraction=0.1)
    table = column_table(atoms)
    _, vsym = vacancy_sites(atoms)
    assert table["n_vacancies"].sum() == len(vsym) > 0
    assert table.loc[table.element == "O", "n_vacancies"].sum() == len(vsym)
    is_ce = np.array(atoms.get_chemical_symbols()) == "Ce"
    n_red = int((atoms.arrays["valence"][is_ce] == 3).sum())
    assert n_red == 2 * len(vsym)  # two Ce3+ per O vacancy
    assert table["n_reduced"].sum() == n_red
    assert (table["n_sites"] == table["n_atoms"] + table["n_vacancies"]).all()


def test_perovskite_mixed_column_gives_cation_and_anion_rows():
    from etem.structures.build import build

    atoms = build(recipe("oxide", material="SrTiO3", thickness_uc=3, vacancy_mode="none",
                         vacancy_fraction=0.0))
    table = column_table(atoms)
    assert set(table["element"]) == {"Sr", "Ti", "O"}
    assert (table["n_sites"] == 3).all()
    ti = table[table.element == "Ti"][["x_A", "y_A"]].to_numpy()
    o = table[table.element == "O"][["x_A", "y_A"]].to_numpy()
    d = np.linalg.norm(ti[:, None] - o[None], axis=2).min(axis=1)
    assert np.allclose(d, 0.0, atol=1e-6)  # every Ti column has an O column on top of it
    assert (table.element == "O").sum() == 3 * (table.element == "Sr").sum()


def test_pt_particle_columns_are_metal():
    from etem.structures.build import build

    atoms = build(recipe("pt_on_ceo2", shape="octahedron", defects=[], rotation_deg=0.0,
                         tilt_deg=0.0))
    table = column_table(atoms)
    metal = table[table.site == "metal"]
    assert set(metal["element"]) == {"Pt"}
    assert metal["n_atoms"].sum() == (np.array(atoms.get_chemical_symbols()) == "Pt").sum()
    assert metal["n_sites"].max() >= 3  # a 1.5 nm particle is several atoms deep
