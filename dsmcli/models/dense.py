"""Dense layers whose gradients do not depend on how many threads the process may use.

A linear layer y = x W (x: N × I, W: I × O) has two products in its backward pass,
∂W = xᵀ g and ∂x = g Wᵀ. XLA writes both as dots that contract a leading or trailing axis of a
row-major operand in place (``lhs_contracting_dims={0}``, resp. ``rhs_contracting_dims={1}``).
XLA:CPU's YNNPACK path takes only dots whose operands are in the canonical order (contracting
axis last for the left operand, first for the right: ``ynn_support.cc``), so these two fall back
to Eigen's contraction, and Eigen splits a long contracted axis (the batch, in ∂W) across the
threads it has: the partial sums, hence the last bits of the gradient, depend on the thread
count. Measured on a 2-core AVX2 EPYC: ``xᵀ g`` at 512 × 128 × 128 gave different bits pinned to
one core than on two, and the quickstart's loss curve differed from its 100th step on.

``dot_general`` below computes the same forward product, and defines its derivative (a
``custom_jvp``, so forward mode, reverse mode and any order of them work) through copies of
xᵀ and Wᵀ that an ``optimization_barrier`` keeps XLA from folding back into the dot: the
reverse pass then computes ∂W = (xᵀ) g and ∂x = g (Wᵀ) as canonical dots, which YNNPACK
computes with a fixed summation order whatever the thread count (tested). The price is one
transposed copy of each layer's input and weight per step (BENCHMARKS.md).

Only the dimension numbers ``nnx.Linear`` uses (the last axis of x against the first of W, no
batch axes) take this path; anything else is ``lax.dot_general`` unchanged.
"""

from __future__ import annotations

from functools import partial

import jax
from jax import lax


def _materialized_transpose(a):
    """``a`` with its two axes swapped, as a copy XLA keeps (not folded into the consumer)."""
    return lax.optimization_barrier(a.T)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _linear(x2, w, precision, preferred_element_type):
    return lax.dot(x2, w, precision=precision, preferred_element_type=preferred_element_type)


@partial(_linear.defjvp, symbolic_zeros=True)
def _linear_jvp(precision, preferred_element_type, primals, tangents):
    """d(x W) = dx W + x dW, with W and x read through their materialized transposes, so that the
    transposed (reverse-mode) products are g (Wᵀ) and (xᵀ) g: canonical dots."""
    x2, w = primals
    dx, dw = tangents
    y = _linear(x2, w, precision, preferred_element_type)
    dot = partial(lax.dot, precision=precision, preferred_element_type=preferred_element_type)
    terms = []
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        terms.append(dot(dx, _materialized_transpose(w).T))
    if not isinstance(dw, jax.custom_derivatives.SymbolicZero):
        terms.append(dot(_materialized_transpose(x2).T, dw))
    if not terms:
        return y, jax.custom_derivatives.zero_from_primal(y)
    return y, terms[0] if len(terms) == 1 else terms[0] + terms[1]


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """``lax.dot_general`` with a thread-count-independent derivative for ``nnx.Linear``'s case
    (x's last axis against the kernel's first, a 2-D kernel); other cases, and an
    ``out_sharding``, go to ``lax.dot_general`` as they are."""
    (lc, rc), (lb, rb) = dimension_numbers
    linear = (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and rhs.ndim == 2
              and lhs.ndim >= 1 and kwargs.get("out_sharding") is None)
    if not linear:
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)
    lead = lhs.shape[:-1]
    x2 = lhs.reshape(-1, lhs.shape[-1])
    y = _linear(x2, rhs, precision, preferred_element_type)
    return y.reshape(*lead, rhs.shape[1])


def Linear(in_features: int, out_features: int, **kwargs):
    """``nnx.Linear`` with ``dot_general`` above (the same parameters and initialisation)."""
    from flax import nnx

    return nnx.Linear(in_features, out_features, dot_general=dot_general, **kwargs)
