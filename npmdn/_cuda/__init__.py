"""The ``cupy`` backend: CUDA C kernels through CuPy. Its face is :mod:`npmdn._cuda.kernels`.

``plan`` (argument checks and layouts) and ``sources`` (where the ``.cu``
files are) do not import CuPy, so the tests check them, and a host build of
the kernels, on machines without a GPU. Nothing here is imported by
``import npmdn``.
"""
