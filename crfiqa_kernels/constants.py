"""The numerical constants of DESIGN §2, in one place for the op, the oracle and the search.

The Triton kernels restate ``SIN_FLOOR`` as a ``tl.constexpr`` (backends import nothing from this
package); keep the two equal.
"""

# ê = E / max(‖E‖, NORM_FLOOR) and ŵ = W / max(‖W‖, NORM_FLOOR).
NORM_FLOOR = 1e-12
# sin θ = sqrt(max(1 − c², SIN_FLOOR)) in φ'(c), so that φ'(±1) stays finite.
SIN_FLOOR = 1e-12
# CR paper = CCS / (NNCCS + 1 + CR_EPS): the denominator lies in [CR_EPS, 2 + CR_EPS].
CR_EPS = 1e-9
# CR official = CCS / max(NNCCS, CR_OFFICIAL_FLOOR), as the authors' released training code has it.
CR_OFFICIAL_FLOOR = -1e-12
