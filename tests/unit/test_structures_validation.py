"""Validation rules: each accepts a good structure and rejects a deliberately bad one."""

from __future__ import annotations

import numpy as np
import pytest

from etem.errors import ValidationError
from etem.structures import validation as v
from etem.structures.build import build
from etem.structures.column_table import column_table
from etem.structures.io import set_vacancy_sites, vacancy_sites
from tests.structures_fixtures import ceo2_slab, recipe

GAP = (1.8, 3.2)


@pytest.fixture(scope="module")
def pt_atoms():
    return build(recipe("pt_on_ceo2", shape="truncated_octahedron", support_facet="111",
                        defects=[], size_nm=1.5))


def test_good_structures_pass_every_rule(pt_atoms):
    for atoms, gap in ((pt_atoms, GAP), (ceo2_slab(3, "random", 0.05), None)):
        v.validate(atoms, column_table(atoms), int(atoms.info["n_removed"]), 0.7, 5.0, gap)


def test_min_distance_rejects_overlapping_atoms():
    atoms = ceo2_slab(3)
    v.check_min_distance(atoms, 0.7)
    bad = atoms.copy()
    bad.positions[1] = bad.positions[0] + [0.5, 0.0, 0.0]
    with pytest.raises(ValidationError, match=r"ox0000: atoms .* Å apart"):
        v.check_min_distance(bad, 0.7)


def test_min_distance_sees_periodic_images():
    from ase import Atoms

    atoms = Atoms("OO", positions=[[0.2, 5, 5], [9.6, 5, 5]], cell=[10, 10, 10],
                  pbc=(True, True, False))
    atoms.info["structure_id"] = "x"
    with pytest.raises(ValidationError, match=r"0.60 Å apart"):
        v.check_min_distance(atoms, 0.7)


def test_inside_cell_rejects_atoms_outside_and_missing_vacuum():
    atoms = ceo2_slab(3)
    v.check_inside_cell(atoms, 5.0)
    bad = atoms.copy()
    bad.positions[3, 0] = -1.0
    with pytest.raises(ValidationError, match="outside the cell along x"):
        v.check_inside_cell(bad, 5.0)
    bad = atoms.copy()
    bad.positions[3, 1] = bad.cell.lengths()[1] + 0.5
    with pytest.raises(ValidationError, match="along y"):
        v.check_inside_cell(bad, 5.0)
    with pytest.raises(ValidationError, match="vacuum"):
        v.check_inside_cell(atoms, 8.0)


def _shift_particle(atoms, dy):
    bad = atoms.copy()
    bad.positions[bad.arrays["region"] == 1, 1] += dy
    return bad


def test_on_support_rejects_sunk_and_floating_particles(pt_atoms):
    v.check_on_support(pt_atoms, GAP)
    with pytest.raises(ValidationError, match=r"gap .* outside"):
        v.check_on_support(_shift_particle(pt_atoms, -5.0), GAP)  # floating (y up)
    with pytest.raises(ValidationError, match=r"gap|inside the support"):
        v.check_on_support(_shift_particle(pt_atoms, +4.0), GAP)  # sunk into the support


def test_on_support_rejects_a_particle_buried_below_the_surface(pt_atoms):
    # move the particle deep into the support: distances may look fine, the position not
    bad = _shift_particle(pt_atoms, 0.0)
    region = bad.arrays["region"]
    top = bad.positions[region == 0, 1].min()
    bad.positions[region == 1, 1] += top + 8.0 - bad.positions[region == 1, 1].min()
    with pytest.raises(ValidationError, match=r"inside the support|gap"):
        v.check_on_support(bad, (0.0, 10.0))


def test_vacancy_rule_rejects_unrecorded_and_occupied_vacancies():
    atoms = ceo2_slab(3, "random", 0.05)
    n = int(atoms.info["n_removed"])
    v.check_vacancies(atoms, column_table(atoms), n)
    with pytest.raises(ValidationError, match="vacancy counts disagree"):
        v.check_vacancies(atoms, column_table(atoms), n + 1)  # an atom removed, not recorded
    bad = atoms.copy()
    pos, sym = vacancy_sites(atoms)
    set_vacancy_sites(bad, np.concatenate([pos, bad.positions[:1]]), [*sym, "Ce"])
    with pytest.raises(ValidationError, match="occupied"):
        v.check_vacancies(bad, column_table(bad), n + 1)


def test_stoichiometry_rule_requires_o_ce_two():
    atoms = ceo2_slab(3)
    v.check_stoichiometry(atoms)
    sym = np.array(atoms.get_chemical_symbols())
    assert (sym == "O").sum() == 2 * (sym == "Ce").sum()
    bad = atoms.copy()
    del bad[int(np.flatnonzero(sym == "O")[0])]  # O removed without recording a vacancy
    with pytest.raises(ValidationError, match="O:Ce must be 2"):
        v.check_stoichiometry(bad)


def test_stoichiometry_rule_for_perovskite():
    atoms = build(recipe("oxide", material="SrTiO3", thickness_uc=3, vacancy_mode="none",
                         vacancy_fraction=0.0))
    v.check_stoichiometry(atoms)
    sym = np.array(atoms.get_chemical_symbols())
    bad = atoms.copy()
    del bad[int(np.flatnonzero(sym == "Ti")[0])]
    with pytest.raises(ValidationError, match="SrTiO3 not stoichiometric"):
        v.check_stoichiometry(bad)
