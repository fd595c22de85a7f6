"""The device mesh's axis names, its check, and the mesh that routed layers see while they are traced.

A leaf module (imports nothing from the package but ``errors``), so both the routed FFN (``moe``, which
dispatches with all-to-all when a mesh splits its experts) and the sharding code (``parallel``, which
builds meshes and sets the expert-parallel mesh around a traced step) can use it without importing
each other.

Mesh axes: ``'data'`` splits the batch, ``'expert'`` splits the batch too and the experts' E axis.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from jax.sharding import Mesh

from routing_laws.errors import ValidationError

DATA, EXPERT = "data", "expert"

_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("routing_laws_expert_mesh", default=None)


def check_mesh(mesh) -> Mesh:
    """``mesh`` itself if it is a jax Mesh with axes ('data', 'expert'); raise otherwise."""
    if not isinstance(mesh, Mesh) or tuple(mesh.axis_names) != (DATA, EXPERT):
        raise ValidationError("mesh", f"must be a jax Mesh with axes ('data', 'expert'), got {mesh!r}",
                              "build it with routing_laws.parallel.make_mesh")
    return mesh


@contextlib.contextmanager
def expert_parallel(mesh: Mesh | None) -> Iterator[None]:
    """While tracing inside this block, routed layers with enough dispatch groups use all-to-all on ``mesh``."""
    if mesh is not None:
        check_mesh(mesh)
    token = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(token)


def current_mesh() -> Mesh | None:
    """The mesh set by the innermost ``expert_parallel`` block (None outside any)."""
    return _MESH.get()
