// npmdn: the per-sample mixture-head math, shared by the CUDA kernels
// (kernels/mdn_kernels.cu, through CuPy RawModule/NVRTC or nvcc) and by a
// host build (the C++ compiler, for the tests that run without a GPU).
//
// Every function mirrors its NumPy reference in npmdn/mixture.py and
// npmdn/philox.py formula for formula and in the same order of operations,
// so float64 agrees with the reference to rounding (~1e-12) and the Philox
// stream, the uniforms and the component choices are the same.
//
// Shapes, per sample (one row of a batch): logits a [K], means mu [K*D]
// (component-major), raw scales s [K*S] with S = D (diagonal), S = 1
// (isotropic) or S = D (D + 1) / 2 (full: the packed factor of each precision,
// its own kernels), target y [D]. A row keeps nothing per component in memory:
// each pass recomputes what it needs, so there is no upper limit on K or D (the
// full kernels use the row's own gradient and draw outputs as their scratch).
//
// NVRTC has no system headers: nothing is included when compiling for the
// device; the host build takes <math.h>.
#ifndef NPMDN_MDN_MATH_CUH
#define NPMDN_MDN_MATH_CUH

#if defined(__CUDACC__)
#define MDN_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define MDN_HD inline
#endif

namespace mdn {

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// Sampling methods (npmdn.mixture.SAMPLE_METHODS, by position).
enum { METHOD_GUMBEL = 0, METHOD_CUMULATIVE = 1 };

// ---------------------------------------------------------------------------
// precision-specific math: explicit names so that float stays float
// ---------------------------------------------------------------------------

MDN_HD float mexp(float x) { return expf(x); }
MDN_HD double mexp(double x) { return exp(x); }
MDN_HD float mlog(float x) { return logf(x); }
MDN_HD double mlog(double x) { return log(x); }
MDN_HD bool finite(float x) { return fabsf(x) <= 3.40282347e+38f; }  // false for inf, NaN
MDN_HD bool finite(double x) { return fabs(x) <= 1.7976931348623157e+308; }

// NumPy's max propagates NaN: once a NaN is seen, the max is NaN.
template <typename T>
MDN_HD T nan_max(T m, T t) { return (t > m || t != t) ? t : m; }

// ---------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., SC'11), as npmdn.philox.philox4x32
// ---------------------------------------------------------------------------

struct Block { u32 x, y, z, w; };

MDN_HD Block philox4x32_10(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
  for (int r = 0; r < 10; ++r) {
    if (r) {  // the key is bumped by the Weyl constants between rounds
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const u64 p0 = (u64)0xD2511F53u * c0;  // 32 x 32 -> 64-bit products
    const u64 p1 = (u64)0xCD9E8D57u * c2;
    const u32 n0 = (u32)(p1 >> 32) ^ c1 ^ k0;
    const u32 n2 = (u32)(p0 >> 32) ^ c3 ^ k1;
    c1 = (u32)p1;
    c3 = (u32)p0;
    c0 = n0;
    c2 = n2;
  }
  Block b = {c0, c1, c2, c3};
  return b;
}

// A select, not an indexed array: keeps the block in registers on the GPU.
MDN_HD u32 lane(const Block& b, int i) {
  return i == 0 ? b.x : (i == 1 ? b.y : (i == 2 ? b.z : b.w));
}

// The stream of one sample: key from the seed, counter (row_lo, row_hi, draw, block).
struct Stream { u32 k0, k1, r0, r1, draw; };

MDN_HD Stream make_stream(u64 seed, u64 row, u32 draw) {
  Stream s = {(u32)seed, (u32)(seed >> 32), (u32)row, (u32)(row >> 32), draw};
  return s;
}

MDN_HD Block block(const Stream& s, u32 b) {
  return philox4x32_10(s.r0, s.r1, s.draw, b, s.k0, s.k1);
}

// word -> (x + 0.5) * 2**-32: exact in float64, strictly inside (0, 1)
MDN_HD double to_uniform(u32 x) { return ((double)x + 0.5) * (1.0 / 4294967296.0); }

// The sample's word stream: word w is lane w % 4 of block w // 4. Words are
// read in increasing order, so one cached block serves four of them: the
// normals reuse the block of the last choice words when they share it.
struct Words {
  Stream s;
  u32 idx;  // which block b holds; 0xFFFFFFFF before the first
  Block b;
};

MDN_HD Words make_words(const Stream& s) {
  Words w = {s, 0xFFFFFFFFu, {0u, 0u, 0u, 0u}};
  return w;
}

MDN_HD u32 word(Words& w, u32 i) {
  if ((i >> 2) != w.idx) {
    w.idx = i >> 2;
    w.b = block(w.s, w.idx);
  }
  return lane(w.b, (int)(i & 3u));
}

// Choice word w as a uniform.
MDN_HD double choice_uniform(const Stream& s, int w) {
  return to_uniform(lane(block(s, (u32)(w >> 2)), w & 3));
}

// The normals start at the first even word after the C choice words
// (C = K for Gumbel-max, 1 for the cumulative method): pair p takes words
// first + 2p (u1) and first + 2p + 1 (u2), never split between blocks.
MDN_HD u32 normal_offset(u32 n_choice) { return n_choice + (n_choice & 1u); }

// Box-Muller on pair p: z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), r = sqrt(-2 log u1).
MDN_HD void normal_pair(Words& w, u32 first, int p, double* z0, double* z1) {
  const u32 i = first + 2u * (u32)p;
  const double u1 = to_uniform(word(w, i));
  const double u2 = to_uniform(word(w, i + 1u));
  const double r = sqrt(-2.0 * log(u1));
  const double theta = (2.0 * 3.141592653589793) * u2;
  *z0 = r * cos(theta);
  *z1 = r * sin(theta);
}

// Normal d: the cosine branch of pair d // 2 for even d, the sine branch for odd d.
MDN_HD double normal(Words& w, u32 first, int d) {
  double z0, z1;
  normal_pair(w, first, d >> 1, &z0, &z1);
  return (d & 1) ? z1 : z0;
}

MDN_HD double normal(const Stream& s, u32 first, int d) {
  Words w = make_words(s);
  return normal(w, first, d);
}

// ---------------------------------------------------------------------------
// component choice (npmdn.mixture.choose_components), all in float64
// ---------------------------------------------------------------------------

// Reads the choice words through w, which keeps the last block for the normals.
template <typename T>
MDN_HD int choose_component(const T* a, int K, Words& w, int method, double temperature) {
  if (temperature == 0.0) {  // argmax a_k, ties to the lowest k
    int best = 0;
    for (int k = 1; k < K; ++k)
      if ((double)a[k] > (double)a[best]) best = k;
    return best;
  }
  // (a_k - max a) / T: the max first, so that a common offset of the logits changes nothing
  double m = (double)a[0];
  for (int k = 1; k < K; ++k) m = nan_max(m, (double)a[k]);
  if (method == METHOD_GUMBEL) {
    // k = argmax_k ((a_k - max a) / T - log(-log u_k)), ties to the lowest k
    int best = 0;
    double best_key = 0.0;
    for (int k = 0; k < K; ++k) {
      const double u = to_uniform(word(w, (u32)k));
      const double key = ((double)a[k] - m) / temperature - log(-log(u));
      if (k == 0 || key > best_key) {
        best = k;
        best_key = key;
      }
    }
    return best;
  }
  // cumulative: pi = softmax(a / T); idx = #{k : c_k <= u} with c the running
  // sums; if rounding leaves u >= c_{K-1}, the last k with pi_k > 0
  const double u = to_uniform(word(w, 0u));
  double sum = 0.0;
  for (int k = 0; k < K; ++k) sum += exp(((double)a[k] - m) / temperature);
  double c = 0.0;
  int idx = 0, last = -1;
  for (int k = 0; k < K; ++k) {
    const double pi = exp(((double)a[k] - m) / temperature) / sum;
    c += pi;
    idx += (c <= u);
    if (pi > 0.0) last = k;
  }
  if (idx < K) return idx;
  return last >= 0 ? last : K - 1;
}

template <typename T>
MDN_HD int choose_component(const T* a, int K, const Stream& s, int method, double temperature) {
  Words w = make_words(s);
  return choose_component(a, K, w, method, temperature);
}

// ---------------------------------------------------------------------------
// densities, NLL and gradient of one row (npmdn.mixture.nll_grad)
// ---------------------------------------------------------------------------

// log_softmax in two parts: log pi_k = (a_k - max a) - log sum_k exp(a_k - max a).
// The max goes first, so that a_k - max a is exact whatever the logits' common
// offset (a_k - logsumexp(a) would round the log-sum away next to an offset of
// 1e16); a max that is not finite counts as 0, as in the reference.
template <typename T>
struct LogitNorm {
  T max, log_sum;
};

template <typename T>
MDN_HD LogitNorm<T> logit_norm(const T* a, int K) {
  T m = a[0];
  for (int k = 1; k < K; ++k) m = nan_max(m, a[k]);
  if (!finite(m)) m = T(0);
  T s = T(0);
  for (int k = 0; k < K; ++k) s += mexp(a[k] - m);
  LogitNorm<T> out = {m, mlog(s)};
  return out;
}

template <typename T>
MDN_HD T log_weight(T a_k, const LogitNorm<T>& n) { return (a_k - n.max) - n.log_sum; }

// z = (y - mu) / sigma as (y - mu) exp(-s), and 0 on the mean even where exp(-s)
// overflows (0 * inf); z / sigma likewise.
template <typename T>
MDN_HD T times_or_zero(T x, T inv_sigma) { return x == T(0) ? T(0) : x * inv_sigma; }

// log N_k = -1/2 sum_d z_kd^2 - sum_d s_kd - D/2 log(2 pi), z = (y - mu) exp(-s);
// writes sum_d z_kd^2 / 2 to *half_z2, each term formed as (z / 2) z: finite
// wherever it fits, even where z^2 does not.
template <typename T>
MDN_HD T log_normal(const T* mu, const T* s, const T* y, int D, int S, T half_d_log_2pi,
                    T* half_z2) {
  T acc = T(0), log_det;
  if (S == 1) {  // isotropic: one scale, counted once per dimension
    const T inv_sigma = mexp(-s[0]);
    for (int d = 0; d < D; ++d) {
      const T z = times_or_zero(y[d] - mu[d], inv_sigma);
      acc += (T(0.5) * z) * z;
    }
    log_det = s[0] * T(D);
  } else {
    log_det = T(0);
    for (int d = 0; d < D; ++d) {
      const T z = times_or_zero(y[d] - mu[d], mexp(-s[d]));
      acc += (T(0.5) * z) * z;
      log_det += s[d];
    }
  }
  *half_z2 = acc;
  return -acc - log_det - half_d_log_2pi;
}

// D/2 log(2 pi), computed in float64 then rounded, as NumPy does with the Python float.
template <typename T>
MDN_HD T half_d_log_2pi(int D) { return (T)(0.5 * (double)D * 1.8378770664093453); }

// ---------------------------------------------------------------------------
// full covariance (npmdn/fullcov.py): s [S], S = D (D + 1) / 2, packs the upper
// Cholesky factor U of the component's precision: s_i = -log U_ii for i < D,
// then U_ij for i < j row by row. z = U (y - mu), log N = -|z|^2/2 - sum_i s_i
// - D/2 log(2 pi). Sums run in the reference's order.
// ---------------------------------------------------------------------------

// position of U_ij (i < j) in a packed factor
MDN_HD int off_index(int i, int j, int D) { return D + i * D - i * (i + 1) / 2 + (j - i - 1); }

// z_i = U_ii (y_i - mu_i) + sum_{j > i} U_ij (y_j - mu_j), the first term 0 on the mean
template <typename T>
MDN_HD T full_z(const T* mu, const T* s, const T* y, int D, int i) {
  T z = times_or_zero(y[i] - mu[i], mexp(-s[i]));
  for (int j = i + 1; j < D; ++j) z += s[off_index(i, j, D)] * (y[j] - mu[j]);
  return z;
}

template <typename T>
MDN_HD T log_normal_full(const T* mu, const T* s, const T* y, int D, T half_d_log_2pi,
                         T* half_z2) {
  T acc = T(0), log_det = T(0);
  for (int i = 0; i < D; ++i) {
    const T z = full_z(mu, s, y, D, i);
    acc += (T(0.5) * z) * z;
    log_det += s[i];
  }
  *half_z2 = acc;
  return -acc - log_det - half_d_log_2pi;
}

// log N_k of either kind: FULL picks the packed factor, else S says diagonal or isotropic
template <typename T, bool FULL>
MDN_HD T component_log_normal(const T* mu, const T* s, const T* y, int D, int S, T c, T* hz2) {
  return FULL ? log_normal_full(mu, s, y, D, c, hz2) : log_normal(mu, s, y, D, S, c, hz2);
}

// log p(y) = logsumexp_k t_k, t_k = log pi_k + log N_k; *norm gets the logits'
// normaliser, *t_max and *t_sum the max of t_k and sum_k exp(t_k - max).
template <typename T, bool FULL = false>
MDN_HD T row_log_prob(const T* a, const T* mu, const T* s, const T* y, int K, int D, int S,
                      LogitNorm<T>* norm, T* t_max, T* t_sum) {
  const LogitNorm<T> ln = logit_norm(a, K);
  const T c = half_d_log_2pi<T>(D);
  T hz2;
  // pass 1: the max of t_k = log pi_k + log N_k
  T m = log_weight(a[0], ln) + component_log_normal<T, FULL>(mu, s, y, D, S, c, &hz2);
  for (int k = 1; k < K; ++k)
    m = nan_max(m, log_weight(a[k], ln) + component_log_normal<T, FULL>(
                                              mu + (i64)k * D, s + (i64)k * S, y, D, S, c, &hz2));
  if (!finite(m)) m = T(0);
  // pass 2: sum_k exp(t_k - max), recomputing t_k rather than storing it
  T acc = T(0);
  for (int k = 0; k < K; ++k)
    acc += mexp(log_weight(a[k], ln) +
                component_log_normal<T, FULL>(mu + (i64)k * D, s + (i64)k * S, y, D, S, c,
                                              &hz2) - m);
  *norm = ln;
  *t_max = m;
  *t_sum = acc;
  return mlog(acc) + m;
}

// NLL of one row and its gradient with respect to the row's head output:
//   dNLL/da_k = pi_k - r_k,  dNLL/dmu_kd = -r_k z_kd / sigma_kd,
//   dNLL/ds_kd = r_k (1 - z_kd^2)   (isotropic: r_k (D - sum_d z_kd^2)),
// and exactly 0 for the mean and scales of a component with r_k = 0, whatever its
// z (a collapsed component far from y has z = inf: 0 * inf must not be NaN).
template <typename T>
MDN_HD void row_nll_grad(const T* a, const T* mu, const T* s, const T* y, int K, int D, int S,
                         T* nll, T* da, T* dmu, T* ds) {
  LogitNorm<T> ln;
  T t_max, t_sum;
  const T lse = row_log_prob(a, mu, s, y, K, D, S, &ln, &t_max, &t_sum);
  const T c = half_d_log_2pi<T>(D);
  *nll = -lse;
  for (int k = 0; k < K; ++k) {
    const T* mk = mu + (i64)k * D;
    const T* sk = s + (i64)k * S;
    T* dmk = dmu + (i64)k * D;
    T* dsk = ds + (i64)k * S;
    const T log_pi = log_weight(a[k], ln);
    T hz2;
    // r_k = exp(t_k - max t) / sum_j exp(t_j - max t): the max first, as in log_softmax
    const T r = mexp(log_pi + log_normal(mk, sk, y, D, S, c, &hz2) - t_max) / t_sum;
    const bool dead = r == T(0);  // NaN (a row whose density is not finite) stays NaN
    // d_logits = pi - r
    da[k] = mexp(log_pi) - r;
    if (S == 1) {
      const T inv_sigma = mexp(-sk[0]);
      for (int d = 0; d < D; ++d) {
        const T z = times_or_zero(y[d] - mk[d], inv_sigma);
        dmk[d] = dead ? T(0) : -r * times_or_zero(z, inv_sigma);  // -r z / sigma
      }
      // r (D - sum_d z^2) = r D - 2 r (sum_d z^2 / 2)
      dsk[0] = dead ? T(0) : r * T(D) - T(2) * (r * hz2);
    } else {
      for (int d = 0; d < D; ++d) {
        const T inv_sigma = mexp(-sk[d]);
        const T z = times_or_zero(y[d] - mk[d], inv_sigma);
        dmk[d] = dead ? T(0) : -r * times_or_zero(z, inv_sigma);  // -r z / sigma
        dsk[d] = dead ? T(0) : r - (r * z) * z;                 // r (1 - z^2)
      }
    }
  }
}

// The same for full factors: dNLL/da_k = pi_k - r_k, dNLL/dmu = -r_k U^T z,
// dNLL/ds_i = r_k (1 - z_i U_ii delta_i), dNLL/dU_ij = r_k z_i delta_j (delta = y - mu).
// z is kept in dmu while the factor's gradient is written, then turned into
// -r U^T z in place from the last coordinate down (entry j needs z_i for i <= j).
template <typename T>
MDN_HD void row_nll_grad_full(const T* a, const T* mu, const T* s, const T* y, int K, int D,
                              int S, T* nll, T* da, T* dmu, T* ds) {
  LogitNorm<T> ln;
  T t_max, t_sum;
  const T lse = row_log_prob<T, true>(a, mu, s, y, K, D, S, &ln, &t_max, &t_sum);
  const T c = half_d_log_2pi<T>(D);
  *nll = -lse;
  for (int k = 0; k < K; ++k) {
    const T* mk = mu + (i64)k * D;
    const T* sk = s + (i64)k * S;
    T* dmk = dmu + (i64)k * D;
    T* dsk = ds + (i64)k * S;
    const T log_pi = log_weight(a[k], ln);
    T hz2;
    const T r = mexp(log_pi + log_normal_full(mk, sk, y, D, c, &hz2) - t_max) / t_sum;
    const bool dead = r == T(0);  // NaN (a row whose density is not finite) stays NaN
    da[k] = mexp(log_pi) - r;     // pi - r
    for (int i = 0; i < D; ++i) dmk[i] = full_z(mk, sk, y, D, i);
    for (int i = 0; i < D; ++i) {
      const T rz = r * dmk[i];  // r z_i
      // r (1 - z_i U_ii delta_i) = r - (r z_i)(U_ii delta_i)
      dsk[i] = dead ? T(0) : r - rz * times_or_zero(y[i] - mk[i], mexp(-sk[i]));
      for (int j = i + 1; j < D; ++j)
        dsk[off_index(i, j, D)] = dead ? T(0) : rz * (y[j] - mk[j]);  // r z_i delta_j
    }
    for (int j = D - 1; j >= 0; --j) {
      // (U^T z)_j = U_jj z_j + sum_{i < j} U_ij z_i
      T acc = times_or_zero(dmk[j], mexp(-sk[j]));
      for (int i = 0; i < j; ++i) acc += sk[off_index(i, j, D)] * dmk[i];
      dmk[j] = dead ? T(0) : -r * acc;
    }
  }
}

// ---------------------------------------------------------------------------
// whole-batch entry points for one index: rows are strided (strides in
// elements), trailing axes contiguous. The GPU kernels call these from a
// grid-stride loop, the host build from a plain loop.
// ---------------------------------------------------------------------------

template <typename T>
MDN_HD void nll_grad_at(i64 i, int K, int D, int S, const T* a, i64 lda, const T* mu, i64 ldmu,
                        const T* s, i64 lds, const T* y, i64 ldy, T* nll, i64 ldnll, T* da,
                        i64 ldda, T* dmu, i64 lddmu, T* ds, i64 ldds) {
  row_nll_grad(a + i * lda, mu + i * ldmu, s + i * lds, y + i * ldy, K, D, S, nll + i * ldnll,
               da + i * ldda, dmu + i * lddmu, ds + i * ldds);
}

template <typename T>
MDN_HD void nll_grad_full_at(i64 i, int K, int D, int S, const T* a, i64 lda, const T* mu,
                             i64 ldmu, const T* s, i64 lds, const T* y, i64 ldy, T* nll,
                             i64 ldnll, T* da, i64 ldda, T* dmu, i64 lddmu, T* ds, i64 ldds) {
  row_nll_grad_full(a + i * lda, mu + i * ldmu, s + i * lds, y + i * ldy, K, D, S,
                    nll + i * ldnll, da + i * ldda, dmu + i * lddmu, ds + i * ldds);
}

template <typename T, bool FULL = false>
MDN_HD void log_prob_at(i64 i, int K, int D, int S, const T* a, i64 lda, const T* mu, i64 ldmu,
                        const T* s, i64 lds, const T* y, i64 ldy, T* out, i64 ldout) {
  LogitNorm<T> ln;
  T t_max, t_sum;
  out[i * ldout] = row_log_prob<T, FULL>(a + i * lda, mu + i * ldmu, s + i * lds, y + i * ldy,
                                         K, D, S, &ln, &t_max, &t_sum);
}

// Draw j of batch row n, with idx = n * J + j; out is [N, J, D] contiguous.
// y_d = mu_kd + (sigma_scale * sigma_kd) * eps_d, eps cast to T first.
template <typename T>
MDN_HD void sample_at(i64 idx, i64 J, int K, int D, int S, const T* a, i64 lda, const T* mu,
                      i64 ldmu, const T* s, i64 lds, u64 seed, u64 row_offset, int method,
                      double temperature, double sigma_scale, T* out) {
  const i64 n = idx / J;
  const u32 j = (u32)(idx - n * J);
  Words w = make_words(make_stream(seed, row_offset + (u64)n, j));
  const int k = choose_component(a + n * lda, K, w, method, temperature);
  const u32 first = normal_offset(method == METHOD_GUMBEL ? (u32)K : 1u);
  const T* mk = mu + n * ldmu + (i64)k * D;
  const T* sk = s + n * lds + (i64)k * S;
  const T scale = (T)sigma_scale;
  T* o = out + idx * D;
  double z0 = 0.0, z1 = 0.0;
  for (int d = 0; d < D; ++d) {
    if (!(d & 1)) normal_pair(w, first, d >> 1, &z0, &z1);
    const T eps = (T)((d & 1) ? z1 : z0);
    // sigma_scale = 0 returns the chosen means, even where sigma overflows (0 * inf)
    const T sd = scale == T(0) ? T(0) : scale * mexp(sk[S == 1 ? 0 : d]);
    o[d] = mk[d] + sd * eps;
  }
}

// The same draw for full factors: y = mu_k + sigma_scale * v with U v = eps, eps
// cast to T first. eps is written to the output row, then solved in place from the
// last coordinate: v_i = sigma_i (eps_i - sum_{j > i} U_ij v_j), sigma_i = exp(s_i).
template <typename T>
MDN_HD void sample_full_at(i64 idx, i64 J, int K, int D, int S, const T* a, i64 lda,
                           const T* mu, i64 ldmu, const T* s, i64 lds, u64 seed, u64 row_offset,
                           int method, double temperature, double sigma_scale, T* out) {
  const i64 n = idx / J;
  const u32 j = (u32)(idx - n * J);
  Words w = make_words(make_stream(seed, row_offset + (u64)n, j));
  const int k = choose_component(a + n * lda, K, w, method, temperature);
  const u32 first = normal_offset(method == METHOD_GUMBEL ? (u32)K : 1u);
  const T* mk = mu + n * ldmu + (i64)k * D;
  const T* sk = s + n * lds + (i64)k * S;
  const T scale = (T)sigma_scale;
  T* o = out + idx * D;
  double z0 = 0.0, z1 = 0.0;
  for (int d = 0; d < D; ++d) {
    if (!(d & 1)) normal_pair(w, first, d >> 1, &z0, &z1);
    o[d] = (T)((d & 1) ? z1 : z0);
  }
  if (scale == T(0)) {  // the chosen means, even where a sigma overflows
    for (int d = 0; d < D; ++d) o[d] = mk[d] + T(0) * o[d];
    return;
  }
  for (int i = D - 1; i >= 0; --i) {
    T acc = o[i];
    for (int c = i + 1; c < D; ++c) acc = acc - sk[off_index(i, c, D)] * o[c];
    o[i] = acc * mexp(sk[i]);
  }
  for (int d = 0; d < D; ++d) o[d] = mk[d] + scale * o[d];
}

}  // namespace mdn

// ---------------------------------------------------------------------------
// The kernels' parameter lists, in one place: the CUDA kernels and the host
// build's entry points are declared with these, so both take exactly the
// arguments that npmdn/_cuda/plan.py builds (strides in elements).
// ---------------------------------------------------------------------------

#define MDN_NLL_GRAD_PARAMS(T)                                                                  \
  mdn::i64 n, int K, int D, int S, const T* __restrict__ a, mdn::i64 lda,                      \
      const T* __restrict__ mu, mdn::i64 ldmu, const T* __restrict__ s, mdn::i64 lds,           \
      const T* __restrict__ y, mdn::i64 ldy, T* __restrict__ nll, mdn::i64 ldnll,               \
      T* __restrict__ da, mdn::i64 ldda, T* __restrict__ dmu, mdn::i64 lddmu,                  \
      T* __restrict__ ds, mdn::i64 ldds
#define MDN_NLL_GRAD_ARGS \
  K, D, S, a, lda, mu, ldmu, s, lds, y, ldy, nll, ldnll, da, ldda, dmu, lddmu, ds, ldds

#define MDN_LOG_PROB_PARAMS(T)                                                                  \
  mdn::i64 n, int K, int D, int S, const T* __restrict__ a, mdn::i64 lda,                      \
      const T* __restrict__ mu, mdn::i64 ldmu, const T* __restrict__ s, mdn::i64 lds,           \
      const T* __restrict__ y, mdn::i64 ldy, T* __restrict__ out, mdn::i64 ldout
#define MDN_LOG_PROB_ARGS K, D, S, a, lda, mu, ldmu, s, lds, y, ldy, out, ldout

// n rows, J draws per row: n * J samples, out is [n, J, D] contiguous.
#define MDN_SAMPLE_PARAMS(T)                                                                    \
  mdn::i64 n, mdn::i64 J, int K, int D, int S, const T* __restrict__ a, mdn::i64 lda,          \
      const T* __restrict__ mu, mdn::i64 ldmu, const T* __restrict__ s, mdn::i64 lds,           \
      mdn::u64 seed, mdn::u64 row_offset, int method, double temperature, double sigma_scale,   \
      T* __restrict__ out
#define MDN_SAMPLE_ARGS \
  J, K, D, S, a, lda, mu, ldmu, s, lds, seed, row_offset, method, temperature, sigma_scale, out

#endif  // NPMDN_MDN_MATH_CUH
