"""The structures stage: a library of labelled atomic models built with ASE.

Two families (see :mod:`etem.structures.contract` for the data contract):

* ``pt_on_ceo2``: Pt nanoparticles (``ase.cluster`` shapes) epitaxially on the edge of a CeO2
  support, seen in profile along a zone axis (beam along z);
* ``oxide``: CeO2 and SrTiO3 crystals of 3-12 unit cells along the beam with oxygen vacancies.

Modules: :mod:`~.recipes` (cheap deterministic enumeration), :mod:`~.crystals` (lattices and
orientations), :mod:`~.particles`, :mod:`~.pt_on_ceo2`, :mod:`~.oxides` (builders),
:mod:`~.validation`, :mod:`~.columns` (projected column tables), :mod:`~.io`,
:mod:`~.library` (shards, manifest, gather), :mod:`~.gallery`, :mod:`~.cli`.
"""
