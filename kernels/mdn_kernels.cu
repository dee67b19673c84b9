// npmdn: the mixture-head CUDA kernels, loaded by npmdn/_cuda/kernels.py
// through CuPy RawModule (NVRTC), which inlines mdn_math.cuh into this source.
//
// Build check (what tests/test_cuda_compile.py runs, per architecture):
//   nvcc -arch=sm_80 -c -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror mdn_kernels.cu
//
// One thread per row (nll_grad, log_prob) or per (row, draw) (sample), in
// grid-stride loops with 64-bit indices. The math is in mdn_math.cuh, shared
// with the host build that the tests compare against the NumPy reference; a
// row stores nothing per component, so any K and D run in the same kernel.
// Parameter lists (MDN_*_PARAMS) are in the header too, shared with the host
// build; npmdn/_cuda/plan.py builds the arguments in that order.
//
// Kernel names are extern "C", so NVRTC and nvcc give the same symbols:
// mdn_<op>_f32 and mdn_<op>_f64; full-covariance factors have their own,
// mdn_<op>_full_f32 and mdn_<op>_full_f64.
#include "mdn_math.cuh"

// Threads per block; the loader reads this line and launches with it.
#define MDN_THREADS 256

#define MDN_GRID_STRIDE(i, total)                                                     \
  for (mdn::i64 i = (mdn::i64)blockIdx.x * blockDim.x + threadIdx.x; i < (total);     \
       i += (mdn::i64)gridDim.x * blockDim.x)

#define MDN_DEFINE_KERNELS(T, SUFFIX)                                                  \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_nll_grad_##SUFFIX(MDN_NLL_GRAD_PARAMS(T)) {                                  \
    MDN_GRID_STRIDE(i, n) mdn::nll_grad_at<T>(i, MDN_NLL_GRAD_ARGS);                   \
  }                                                                                    \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_log_prob_##SUFFIX(MDN_LOG_PROB_PARAMS(T)) {                                  \
    MDN_GRID_STRIDE(i, n) mdn::log_prob_at<T>(i, MDN_LOG_PROB_ARGS);                   \
  }                                                                                    \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_sample_##SUFFIX(MDN_SAMPLE_PARAMS(T)) {                                      \
    MDN_GRID_STRIDE(idx, n * J) mdn::sample_at<T>(idx, MDN_SAMPLE_ARGS);               \
  }                                                                                    \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_nll_grad_full_##SUFFIX(MDN_NLL_GRAD_PARAMS(T)) {                             \
    MDN_GRID_STRIDE(i, n) mdn::nll_grad_full_at<T>(i, MDN_NLL_GRAD_ARGS);              \
  }                                                                                    \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_log_prob_full_##SUFFIX(MDN_LOG_PROB_PARAMS(T)) {                             \
    MDN_GRID_STRIDE(i, n) mdn::log_prob_at<T, true>(i, MDN_LOG_PROB_ARGS);             \
  }                                                                                    \
  extern "C" __global__ void __launch_bounds__(MDN_THREADS)                           \
      mdn_sample_full_##SUFFIX(MDN_SAMPLE_PARAMS(T)) {                                 \
    MDN_GRID_STRIDE(idx, n * J) mdn::sample_full_at<T>(idx, MDN_SAMPLE_ARGS);          \
  }

MDN_DEFINE_KERNELS(float, f32)
MDN_DEFINE_KERNELS(double, f64)
