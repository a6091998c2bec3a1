// The sequence tasks' attention on the CPU, forward and backward, one (example, head) slice at a time.
// Built at first use by grokscope/seqkernel.py (torch.utils.cpp_extension.load_inline); see its docstring.
//
// q (n, S, H, dh), k and v (n, T, H, dh): any strides, unit stride along dh. Query i of example b sees the keys
// j <= lim[b][i] (lim (n, S), int64; every query sees at least key 0). Forward returns z (n, S, H, dh) contiguous
// and the log-sum-exp of each query's scaled scores (n, H, S); the backward recomputes the softmax from it (as
// flash attention does) and returns dq, dk, dv contiguous. Each slice's loop order is fixed and slices never
// share an output, so the result does not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int VB = 32;  // vector width in bytes (AVX2; the compiler splits or merges it for other targets)
// unaligned (aligned to one element) and may_alias: loads and stores straight from the arrays of scalars
template <typename T> struct VecT { typedef T type __attribute__((vector_size(VB), aligned(sizeof(T)), may_alias)); };
template <typename T> using Vec = typename VecT<T>::type;
template <typename T> constexpr int lanes() { return VB / sizeof(T); }

template <typename T> inline Vec<T> load(const T* p) { return *reinterpret_cast<const Vec<T>*>(p); }
template <typename T> inline void store(T* p, Vec<T> v) { *reinterpret_cast<Vec<T>*>(p) = v; }
template <typename T> inline Vec<T> splat(T x) { return Vec<T>{} + x; }
template <typename T> inline T hsum(Vec<T> v) { T s = 0; for (int u = 0; u < lanes<T>(); ++u) s += v[u]; return s; }
template <typename T> inline T hmax(Vec<T> v) { T m = v[0]; for (int u = 1; u < lanes<T>(); ++u) m = v[u] > m ? v[u] : m; return m; }

// exp, lane by lane: float32 by a Cody-Waite reduction and a degree-6 polynomial (max error ~2 ulp; NaN stays
// NaN, x < -87.3 gives 0), float64 by std::exp (the float64 path exists for the equivalence tests).
inline Vec<float> vexp(Vec<float> x) {
  typedef int32_t VI __attribute__((vector_size(VB)));
  const Vec<float> lo = splat(-87.3f), hi = splat(88.7f);
  Vec<float> under = x < lo ? splat(1.0f) : splat(0.0f);  // as a mask multiplied in at the end
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  Vec<float> n = x * 1.44269504088896341f;
  n = __builtin_convertvector(__builtin_convertvector(n + (n >= 0 ? splat(0.5f) : splat(-0.5f)), VI), Vec<float>);
  Vec<float> r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  Vec<float> p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  VI e = (__builtin_convertvector(n, VI) + 127) << 23;
  Vec<float> scale;
  std::memcpy(&scale, &e, sizeof scale);
  return p * scale * (1.0f - under);
}
inline Vec<double> vexp(Vec<double> x) {
  for (int u = 0; u < lanes<double>(); ++u) x[u] = std::exp(x[u]);
  return x;
}

// One slice's keys and values, copied into layouts the loops read with unit stride, zero-padded:
// Kt, Vt (dh, TP) for scores over keys; Kr, Vr (T, DP) for sums over keys.
template <typename T, int DP>
struct Slice {
  int64_t Tn, TP, dh;
  std::vector<T> Kt, Vt, Kr, Vr;
  Slice(int64_t T_, int64_t dh_)
      : Tn(T_), TP((T_ + 15) / 16 * 16), dh(dh_), Kt(dh_ * TP, 0), Vt(dh_ * TP, 0), Kr(T_ * DP, 0), Vr(T_ * DP, 0) {}
  void load_kv(const T* k, const T* v, int64_t ks, int64_t vs) {
    for (int64_t j = 0; j < Tn; ++j)
      for (int64_t d = 0; d < dh; ++d) {
        Kt[d * TP + j] = Kr[j * DP + d] = k[j * ks + d];
        Vt[d * TP + j] = Vr[j * DP + d] = v[j * vs + d];
      }
  }
  // s[j] = scale * q . k_j and, with g, g[j] = dz . v_j, for j < LP (a multiple of 16; padded keys give 0)
  void scores(const T* qi, T scale, int64_t LP, T* s, const T* gi = nullptr, T* g = nullptr) const {
    constexpr int W = lanes<T>();
    T a[DP], b[DP];
    for (int64_t d = 0; d < dh; ++d) { a[d] = qi[d] * scale; b[d] = gi ? gi[d] : T(0); }
    for (int64_t j = 0; j < LP; j += W) {
      Vec<T> acc = {}, acc2 = {};
      for (int64_t d = 0; d < dh; ++d) {
        acc += a[d] * load(Kt.data() + d * TP + j);
        if (g) acc2 += b[d] * load(Vt.data() + d * TP + j);
      }
      store(s + j, acc);
      if (g) store(g + j, acc2);
    }
  }
};

// softmax numerator in place: s[j] <- exp(s[j] - c) for j < L, 0 for L <= j < LP
template <typename T>
inline Vec<T> exp_shifted(T* s, int64_t L, int64_t LP, T c) {
  constexpr int W = lanes<T>();
  Vec<T> sum = {}, idx;
  for (int u = 0; u < W; ++u) idx[u] = T(u);
  for (int64_t j = 0; j < LP; j += W) {
    Vec<T> e = vexp(load(s + j) - c);
    e = (idx + T(j)) < T(L) ? e : splat(T(0));
    store(s + j, e);
    sum += e;
  }
  return sum;
}

struct Shape { int64_t n, S, T, H, dh, qs0, qs1, ks0, ks1, vs0, vs1; };

template <typename T, int DP>
void forward(const T* q, const T* k, const T* v, const int64_t* lim, T* z, T* lse, Shape sh, T scale) {
  constexpr int W = lanes<T>(), NV = DP / W;
  const int64_t S = sh.S, H = sh.H, dh = sh.dh;
  at::parallel_for(0, sh.n * H, 1, [&](int64_t x0, int64_t x1) {
    Slice<T, DP> sl(sh.T, dh);
    std::vector<T> s(sl.TP);
    for (int64_t x = x0; x < x1; ++x) {
      const int64_t b = x / H, h = x % H;
      sl.load_kv(k + b * sh.ks0 + h * dh, v + b * sh.vs0 + h * dh, sh.ks1, sh.vs1);
      for (int64_t i = 0; i < S; ++i) {
        const T* qi = q + b * sh.qs0 + i * sh.qs1 + h * dh;
        const int64_t L = lim[b * S + i] + 1, LP = (L + 15) / 16 * 16;
        sl.scores(qi, scale, LP, s.data());
        Vec<T> mv = splat(s[0]), idx;
        for (int u = 0; u < W; ++u) idx[u] = T(u);
        for (int64_t j = 0; j < LP; j += W) {
          Vec<T> c = load(s.data() + j);
          mv = ((idx + T(j)) < T(L)) & (c > mv) ? c : mv;
        }
        const T m = hmax<T>(mv);
        const T sum = hsum<T>(exp_shifted(s.data(), L, LP, m));
        T out[DP];
        for (int u = 0; u < NV; ++u) {
          Vec<T> a0 = {}, a1 = {}, a2 = {}, a3 = {};  // four chains: one FMA's latency does not pace the loop
          const T* vj = sl.Vr.data() + u * W;
          int64_t j = 0;
          for (; j + 4 <= L; j += 4, vj += 4 * DP) {
            a0 += s[j] * load(vj);
            a1 += s[j + 1] * load(vj + DP);
            a2 += s[j + 2] * load(vj + 2 * DP);
            a3 += s[j + 3] * load(vj + 3 * DP);
          }
          for (; j < L; ++j, vj += DP) a0 += s[j] * load(vj);
          store(out + u * W, (a0 + a1) + (a2 + a3));
        }
        T* zi = z + ((b * S + i) * H + h) * dh;
        for (int64_t d = 0; d < dh; ++d) zi[d] = out[d] / sum;
        lse[x * S + i] = m + std::log(sum);
      }
    }
  });
}

template <typename T, int DP>
void backward(const T* q, const T* k, const T* v, const int64_t* lim, const T* z, const T* lse, const T* dz,
              T* dq, T* dk, T* dv, Shape sh, T scale) {
  constexpr int W = lanes<T>(), NV = DP / W;
  const int64_t S = sh.S, Tn = sh.T, H = sh.H, dh = sh.dh;
  at::parallel_for(0, sh.n * H, 1, [&](int64_t x0, int64_t x1) {
    Slice<T, DP> sl(Tn, dh);
    std::vector<T> p(sl.TP), g(sl.TP), dK(Tn * DP), dV(Tn * DP);
    for (int64_t x = x0; x < x1; ++x) {
      const int64_t b = x / H, h = x % H;
      sl.load_kv(k + b * sh.ks0 + h * dh, v + b * sh.vs0 + h * dh, sh.ks1, sh.vs1);
      std::fill(dK.begin(), dK.end(), T(0));
      std::fill(dV.begin(), dV.end(), T(0));
      for (int64_t i = 0; i < S; ++i) {
        const T* qi = q + b * sh.qs0 + i * sh.qs1 + h * dh;
        const int64_t o = ((b * S + i) * H + h) * dh;
        const T* zi = z + o;
        const T* gi = dz + o;
        const int64_t L = lim[b * S + i] + 1, LP = (L + 15) / 16 * 16;
        sl.scores(qi, scale, LP, p.data(), gi, g.data());
        T r = 0;  // dz . z = sum_j p_j (dz . v_j)
        for (int64_t d = 0; d < dh; ++d) r += gi[d] * zi[d];
        exp_shifted(p.data(), L, LP, lse[x * S + i]);  // p_j: the attention weights
        for (int64_t j = 0; j < LP; j += W)  // g_j <- d loss / d score_j, times the scale
          store(g.data() + j, load(p.data() + j) * (load(g.data() + j) - r) * scale);
        T qs[DP] = {0}, gs[DP] = {0}, out[DP];
        for (int64_t d = 0; d < dh; ++d) { qs[d] = qi[d]; gs[d] = gi[d]; }
        for (int u = 0; u < NV; ++u) {  // one vector of the head's columns at a time, all in registers
          const Vec<T> qv = load(qs + u * W), gv = load(gs + u * W);
          Vec<T> a0 = {}, a1 = {};
          const T* kj = sl.Kr.data() + u * W;
          T* dkj = dK.data() + u * W;
          T* dvj = dV.data() + u * W;
          int64_t j = 0;
          for (; j + 2 <= L; j += 2, kj += 2 * DP, dkj += 2 * DP, dvj += 2 * DP) {
            const T c0 = g[j], c1 = g[j + 1];
            a0 += c0 * load(kj);
            a1 += c1 * load(kj + DP);
            store(dkj, load(dkj) + c0 * qv);
            store(dkj + DP, load(dkj + DP) + c1 * qv);
            store(dvj, load(dvj) + p[j] * gv);
            store(dvj + DP, load(dvj + DP) + p[j + 1] * gv);
          }
          for (; j < L; ++j, kj += DP, dkj += DP, dvj += DP) {
            a0 += g[j] * load(kj);
            store(dkj, load(dkj) + g[j] * qv);
            store(dvj, load(dvj) + p[j] * gv);
          }
          store(out + u * W, a0 + a1);
        }
        T* dqi = dq + o;
        for (int64_t d = 0; d < dh; ++d) dqi[d] = out[d];
      }
      for (int64_t j = 0; j < Tn; ++j) {
        T* dkj = dk + ((b * Tn + j) * H + h) * dh;
        T* dvj = dv + ((b * Tn + j) * H + h) * dh;
        for (int64_t d = 0; d < dh; ++d) { dkj[d] = dK[j * DP + d]; dvj[d] = dV[j * DP + d]; }
      }
    }
  });
}

Shape shape_of(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v: (n, positions, heads, d_head)");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "unit stride along d_head");
  TORCH_CHECK(q.stride(2) == q.size(3) && k.stride(2) == k.size(3) && v.stride(2) == v.size(3),
              "heads adjacent along the last axis");
  TORCH_CHECK(q.size(3) <= 128, "d_head above 128");
  TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3),
              "k, v: (n, T, heads, d_head) as q");
  return {q.size(0), q.size(1), k.size(1), q.size(2), q.size(3),
          q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1)};
}

#define GS_DISPATCH_DP(dh, ...)                               \
  if ((dh) <= 8) { constexpr int DP = 8; __VA_ARGS__ }        \
  else if ((dh) <= 16) { constexpr int DP = 16; __VA_ARGS__ } \
  else if ((dh) <= 32) { constexpr int DP = 32; __VA_ARGS__ } \
  else if ((dh) <= 64) { constexpr int DP = 64; __VA_ARGS__ } \
  else { constexpr int DP = 128; __VA_ARGS__ }

}  // namespace

static void check_lim(const torch::Tensor& lim, const Shape& sh) {  // every query sees keys 0..lim, lim < T
  TORCH_CHECK(lim.scalar_type() == torch::kLong && lim.dim() == 2 && lim.size(0) == sh.n && lim.size(1) == sh.S,
              "lim: int64 (n, S)");
  TORCH_CHECK(lim.numel() == 0 || (lim.min().item<int64_t>() >= 0 && lim.max().item<int64_t>() < sh.T),
              "lim: key positions in 0..T-1");
}

std::vector<torch::Tensor> attn_fwd(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor lim,
                                    double scale) {
  const Shape sh = shape_of(q, k, v);
  auto z = torch::empty({sh.n, sh.S, sh.H, sh.dh}, q.options());
  auto lse = torch::empty({sh.n, sh.H, sh.S}, q.options());
  check_lim(lim, sh);
  lim = lim.contiguous();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attn_fwd", [&] {
    GS_DISPATCH_DP(sh.dh, forward<scalar_t, DP>(q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                                                v.data_ptr<scalar_t>(), lim.data_ptr<int64_t>(),
                                                z.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), sh,
                                                (scalar_t)scale);)
  });
  return {z, lse};
}

std::vector<torch::Tensor> attn_bwd(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor lim,
                                    torch::Tensor z, torch::Tensor lse, torch::Tensor dz, double scale) {
  const Shape sh = shape_of(q, k, v);
  check_lim(lim, sh);
  TORCH_CHECK(dz.sizes() == z.sizes() && z.sizes() == q.sizes(), "dz, z: the shape of q");
  dz = dz.contiguous();
  lim = lim.contiguous();
  auto dq = torch::empty({sh.n, sh.S, sh.H, sh.dh}, q.options());
  auto dk = torch::empty({sh.n, sh.T, sh.H, sh.dh}, q.options());
  auto dv = torch::empty({sh.n, sh.T, sh.H, sh.dh}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attn_bwd", [&] {
    GS_DISPATCH_DP(sh.dh, backward<scalar_t, DP>(q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                                                 v.data_ptr<scalar_t>(), lim.data_ptr<int64_t>(),
                                                 z.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
                                                 dz.data_ptr<scalar_t>(), dq.data_ptr<scalar_t>(),
                                                 dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(), sh,
                                                 (scalar_t)scale);)
  });
  return {dq, dk, dv};
}
