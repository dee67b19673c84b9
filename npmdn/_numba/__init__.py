"""The ``numba`` backend: fused CPU kernels. Its face is :mod:`npmdn._numba.kernels`.

Nothing here is imported by ``import npmdn``; :mod:`npmdn.backend` imports
``kernels`` (and ``train``) when the numba backend is first asked for.
"""
