"""Compile a kernel with its call tree optimised once, in a process that only compiles.

Numba compiles every ``@njit`` function a kernel calls as a library of its
own and, when it finalises a library, links in the libraries of the functions
it calls and runs LLVM's full module optimisation over the result
(``CPUCodeLibrary.finalize`` -> ``_optimize_final_module``). A callee's code
is therefore optimised once as its own library and again inside every caller
up the tree: for the training kernel (epoch -> chunk -> forward pass ->
matrix product -> ...) that repetition is about a third of its compile
(17.8 s -> 12.1 s for ``train_epoch_serial`` float32 on the 2-core
development machine), the one compile a first fit cannot overlap with anything.

While :func:`once` compiles a kernel, the libraries finalised under it skip
their own full optimisation (they keep the per-function passes Numba runs
when their IR is added); the kernel's own library runs it as before over its
linked module, which holds every callee. What the disk cache receives is the
machine code of that module, and only that module's code is ever run or
cached, so the callees get none of their own either: Numba would lower a
CPython and a C wrapper for each callee and compile its library to native
code when it finalises it; under :func:`once` neither happens (their
dispatchers keep an entry without code, so nothing in such a process may call
a callee from Python). ``train_epoch_serial`` float32 in a fresh cache: 17.8 s
compiled the ordinary way, 12.1-12.6 s with the callees' optimisation skipped,
10.7-10.9 s without their machine code, 8.4-8.6 s without their wrappers;
the log-density kernel 3.8 -> 3.3 s, the sampling kernel 5.5 -> 5.0 s.

Why only in a process that compiles and exits (:func:`npmdn._numba.warm.main`):
a kernel's callees have no code there. A process that loads the kernel from
the disk cache runs the object code of the fully optimised module alone. The
kernels so compiled compute the same bits as those compiled the ordinary
way, at the same speed (``tests/backends/test_warm.py``: a fit's weights,
history, log-densities and samples; the threaded training kernel too, checked
by hand: a 20000-row fit at batch 8192 to the same bits).

The window holds Numba's global compiler lock, so no other thread compiles
while the method is replaced. If Numba's internals differ from what this
expects (another version), nothing is replaced and kernels compile as before.
"""

from __future__ import annotations

import contextlib

try:  # Numba internals: if they move, compile as Numba would (see the module docstring)
    from numba.core.codegen import CPUCodeLibrary as _Library
    from numba.core.codegen import JITCPUCodegen as _Codegen
    from numba.core.compiler_lock import global_compiler_lock as _lock
    from numba.core.lowering import BaseLower as _Lower

    _full = _Library._optimize_final_module
    _finalize = _Library._finalize_final_module
    _set_env = _Codegen.set_env
    _wrappers = _Lower.create_cpython_wrapper, _Lower.create_cfunc_wrapper
    # (the two steps of Numba's finalisation a callee's still takes: present, or no window)
    _Library._finalize_dynamic_globals, _Library._verify_declare_only_symbols  # noqa: B018
except (ImportError, AttributeError):  # pragma: no cover - another Numba
    _Library = _Codegen = _Lower = _lock = _full = _finalize = _set_env = _wrappers = None

_tops: list = []  # the qualified names of the kernels being compiled, innermost last
# Numba's runtime library: shared by every later compile, so always optimised fully
_ALWAYS = frozenset({"nrt"})


def _callee(library) -> bool:
    return bool(_tops) and library.name not in _tops and library.name not in _ALWAYS


def _optimize_final_module(library):
    if _callee(library):
        return  # a callee's: optimised inside the kernel's linked module instead
    _full(library)


def _finalize_final_module(library):
    if not _callee(library):
        _finalize(library)
        return
    # a callee's: no machine code (the kernel's module holds its IR and is compiled)
    library._finalize_dynamic_globals()
    library._verify_declare_only_symbols()
    library._finalized = True


def _cpython_wrapper(lower, *args, **kwargs):
    if not _callee(lower.library):  # a callee's is never called from Python
        _wrappers[0](lower, *args, **kwargs)


def _cfunc_wrapper(lower, *args, **kwargs):
    if not _callee(lower.library):
        _wrappers[1](lower, *args, **kwargs)


def _set_env_if_compiled(codegen, env_name, env):
    if codegen._engine.get_global_value_address(env_name):
        _set_env(codegen, env_name, env)


@contextlib.contextmanager
def once(dispatcher):
    """While this block compiles ``dispatcher`` (loads from the disk cache are
    unaffected), optimise only its library's linked module fully."""
    if _full is None:
        yield
        return
    with _lock:
        _tops.append(dispatcher.py_func.__qualname__)
        _Library._optimize_final_module = _optimize_final_module
        _Library._finalize_final_module = _finalize_final_module
        _Codegen.set_env = _set_env_if_compiled
        _Lower.create_cpython_wrapper, _Lower.create_cfunc_wrapper = (_cpython_wrapper,
                                                                      _cfunc_wrapper)
        try:
            yield
        finally:
            _tops.pop()
            if not _tops:
                _Library._optimize_final_module = _full
                _Library._finalize_final_module = _finalize
                _Codegen.set_env = _set_env
                _Lower.create_cpython_wrapper, _Lower.create_cfunc_wrapper = _wrappers
