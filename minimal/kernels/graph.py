"""The backward walk's own speed path (reference: autograd._leaf_gradients)."""

from __future__ import annotations

import numpy as np


def leaf_gradients(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Each leaf's gradient as an array of its own, copying only where needed.

    `.grad` may be changed in place later (clip_grad_norm scales it), so no two leaves, and
    nothing else, may share one. The reference copies every array; here an array is handed
    over as it is when it owns its memory, is writeable and has not been handed to another
    leaf already: only views and shared arrays are copied (a network's gradients are mostly
    fresh products: copying each of them again is a pass over every weight per step)."""
    handed_out: set[int] = set()
    owned = []
    for array in arrays:
        fresh = array.flags.owndata and array.flags.writeable and id(array) not in handed_out
        array = array if fresh else array.copy()
        handed_out.add(id(array))
        owned.append(array)
    return owned
