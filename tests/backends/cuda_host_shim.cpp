// Host build of kernels/mdn_math.cuh for tests/test_cuda_host.py: the same
// per-sample math the CUDA kernels run, compiled by the system C++ compiler
// and called through ctypes. The batch entry points take exactly the kernels'
// parameter lists (MDN_*_PARAMS) and loop where the kernels grid-stride.
#include "mdn_math.cuh"

#define HOST_BATCH(T, SUFFIX)                                                        \
  extern "C" void host_mdn_nll_grad_##SUFFIX(MDN_NLL_GRAD_PARAMS(T)) {               \
    for (mdn::i64 i = 0; i < n; ++i) mdn::nll_grad_at<T>(i, MDN_NLL_GRAD_ARGS);      \
  }                                                                                  \
  extern "C" void host_mdn_log_prob_##SUFFIX(MDN_LOG_PROB_PARAMS(T)) {               \
    for (mdn::i64 i = 0; i < n; ++i) mdn::log_prob_at<T>(i, MDN_LOG_PROB_ARGS);      \
  }                                                                                  \
  extern "C" void host_mdn_sample_##SUFFIX(MDN_SAMPLE_PARAMS(T)) {                   \
    for (mdn::i64 idx = 0; idx < n * J; ++idx) mdn::sample_at<T>(idx, MDN_SAMPLE_ARGS); \
  }                                                                                  \
  extern "C" void host_mdn_nll_grad_full_##SUFFIX(MDN_NLL_GRAD_PARAMS(T)) {          \
    for (mdn::i64 i = 0; i < n; ++i) mdn::nll_grad_full_at<T>(i, MDN_NLL_GRAD_ARGS); \
  }                                                                                  \
  extern "C" void host_mdn_log_prob_full_##SUFFIX(MDN_LOG_PROB_PARAMS(T)) {          \
    for (mdn::i64 i = 0; i < n; ++i) mdn::log_prob_at<T, true>(i, MDN_LOG_PROB_ARGS); \
  }                                                                                  \
  extern "C" void host_mdn_sample_full_##SUFFIX(MDN_SAMPLE_PARAMS(T)) {              \
    for (mdn::i64 idx = 0; idx < n * J; ++idx)                                       \
      mdn::sample_full_at<T>(idx, MDN_SAMPLE_ARGS);                                  \
  }                                                                                  \
  /* component k of draw j of row n, as sample_at chooses it: out [n, J] */          \
  extern "C" void host_mdn_choose_##SUFFIX(mdn::i64 n, mdn::i64 J, int K, const T* a, \
                                           mdn::i64 lda, mdn::u64 seed,              \
                                           mdn::u64 row_offset, int method,          \
                                           double temperature, mdn::i64* out) {      \
    for (mdn::i64 i = 0; i < n; ++i)                                                 \
      for (mdn::i64 j = 0; j < J; ++j)                                               \
        out[i * J + j] = mdn::choose_component(                                      \
            a + i * lda, K, mdn::make_stream(seed, row_offset + (mdn::u64)i, (mdn::u32)j), \
            method, temperature);                                                    \
  }

HOST_BATCH(float, f32)
HOST_BATCH(double, f64)

extern "C" {

// Philox4x32-10 on n counters [n, 4] and keys [n, 2] -> out [n, 4].
void host_philox4x32_10(mdn::i64 n, const mdn::u32* ctr, const mdn::u32* key, mdn::u32* out) {
  for (mdn::i64 i = 0; i < n; ++i) {
    const mdn::u32* c = ctr + 4 * i;
    const mdn::Block b = mdn::philox4x32_10(c[0], c[1], c[2], c[3], key[2 * i], key[2 * i + 1]);
    out[4 * i] = b.x;
    out[4 * i + 1] = b.y;
    out[4 * i + 2] = b.z;
    out[4 * i + 3] = b.w;
  }
}

// Choice uniforms [R, J, W] and normals [R, J, D] for global rows[R], draws 0..J-1.
void host_choice_uniforms(mdn::u64 seed, mdn::i64 R, const mdn::u64* rows, mdn::i64 J, int W,
                          double* out) {
  for (mdn::i64 r = 0; r < R; ++r)
    for (mdn::i64 j = 0; j < J; ++j) {
      const mdn::Stream s = mdn::make_stream(seed, rows[r], (mdn::u32)j);
      for (int w = 0; w < W; ++w) out[(r * J + j) * W + w] = mdn::choice_uniform(s, w);
    }
}

void host_normals(mdn::u64 seed, mdn::i64 R, const mdn::u64* rows, mdn::i64 J, int D,
                  mdn::u32 first, double* out) {
  for (mdn::i64 r = 0; r < R; ++r)
    for (mdn::i64 j = 0; j < J; ++j) {
      const mdn::Stream s = mdn::make_stream(seed, rows[r], (mdn::u32)j);
      for (int d = 0; d < D; ++d) out[(r * J + j) * D + d] = mdn::normal(s, first, d);
    }
}

}  // extern "C"
