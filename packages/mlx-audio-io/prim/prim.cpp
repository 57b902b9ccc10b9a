// mlx_audio_io._prim: the C kernels of native/io/aio_nn.c as MLX graph nodes (CPU).
//
// Called through cffi, a kernel needs its input evaluated first: every call forces an
// mx.eval, a round trip to MLX's CPU stream thread (~0.1 ms on a small VM, ~65 per decoded
// token of a Llama). As a Primitive the kernel runs on that stream in graph order, like
// MLX's own operations, with no evaluation in between. The kernels are not compiled in
// here: Python hands over the addresses of the ones cffi loaded (set_kernels), so both
// paths share one worker pool. Built against one MLX version; Python imports this module
// only when the running MLX is that version (mlx_audio_io/_lib.py).
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

namespace nb = nanobind;
namespace mx = mlx::core;

typedef int (*linear_fn)(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
                         const float *bias, float *out, int threads, char *err);
typedef int (*matmul_fn)(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
                         float *out, int threads, char *err);
typedef int (*qmm_fn)(const float *x, int64_t m, int64_t k, const uint32_t *w,
                      const void *scales, const void *biases, int dtype, int64_t n,
                      int64_t group_size, int bits, float *out, int threads, char *err);

typedef int (*norm_act_fn)(const float *x, const int64_t *strides, const float *proj,
                           int64_t k_in, const float *x_bias, float *out, int64_t outer,
                           int64_t rows, int64_t mid, int64_t channels, int64_t groups,
                           int normalize, float eps, const float *weight, const float *bias,
                           int act, const float *act_param, const float *residual,
                           const float *res_scale, int threads, char *err);
typedef int (*conv2d_fn)(void *sgemm, void *set_threads, void *get_threads, const float *x,
                         const float *add, int64_t batch, int64_t h, int64_t w, int64_t c_in,
                         const float *weight, int64_t c_out, int64_t kh, int64_t kw, int64_t ph,
                         int64_t pw, int64_t dh, int64_t dw, const float *bias, int act,
                         float *out, int threads, char *err);
typedef int (*depthwise_fn)(const float *x, int64_t batch, int64_t length, int64_t channels,
                            const float *weight, int64_t taps, int64_t padding, int64_t dilation,
                            const float *bias, int act, const float *act_param, float *out,
                            int64_t out_len, int threads, char *err);

typedef int (*attention_fn)(void *sgemm, void *set_threads, void *get_threads, const float *q,
                            const float *k, const float *v, float *out, int64_t batch,
                            int64_t heads, int64_t lq, int64_t lk, int64_t d, float scale,
                            int64_t block, int64_t q_start, int64_t k_start, int64_t window,
                            int threads, char *err);

static std::atomic<linear_fn> g_linear{nullptr};
static std::atomic<qmm_fn> g_qmm{nullptr};
static std::atomic<matmul_fn> g_matmul{nullptr};
static std::atomic<norm_act_fn> g_norm_act{nullptr};
static std::atomic<conv2d_fn> g_conv2d{nullptr};
static std::atomic<depthwise_fn> g_depthwise{nullptr};
static std::atomic<attention_fn> g_attention{nullptr};

[[noreturn]] static void kernel_failed(const char *name, const char *err) {
  throw std::runtime_error(std::string(name) + ": " + err);
}

static void check_kernels() {
  if (!g_linear.load() || !g_qmm.load() || !g_matmul.load() || !g_norm_act.load() ||
      !g_conv2d.load() || !g_depthwise.load() || !g_attention.load())
    throw std::runtime_error("mlx_audio_io._prim: set_kernels() was not called");
}

// a strided array's elements into dst, row-major
template <typename T>
static void gather_rows(const T *src, T *dst, const mx::Shape &shape, const mx::Strides &strides) {
  const int nd = static_cast<int>(shape.size());
  if (nd == 0) {
    *dst = *src;
    return;
  }
  std::vector<int64_t> index(nd, 0);
  const int64_t inner = shape[nd - 1], step = strides[nd - 1];
  for (;;) {
    int64_t offset = 0;
    for (int d = 0; d < nd - 1; d++) offset += index[d] * strides[d];
    for (int64_t i = 0; i < inner; i++) *dst++ = src[offset + i * step];
    int d = nd - 2;
    for (; d >= 0 && ++index[d] == shape[d]; d--) index[d] = 0;
    if (d < 0) return;
  }
}

// `a` as row-major data for a kernel: `a` itself when it is (a slice of a larger buffer
// included, such as one of a stacked weight's matrices, which MLX's Contiguous would copy:
// 8 MB per CSM audio head and step), else a copy the encoder keeps until the kernel has run
static mx::array row_major(const mx::array &a, mx::cpu::CommandEncoder &enc) {
  if (a.flags().row_contiguous) return a;
  mx::array copy(a.shape(), a.dtype(), nullptr, {});
  copy.set_data(mx::allocator::malloc(copy.nbytes()));
  enc.add_temporary(copy);
  if (a.size() == 0) return copy;
  enc.dispatch([src = a.data<char>(), dst = copy.data<char>(), shape = a.shape(),
                strides = a.strides(), item = a.itemsize()]() {
    switch (item) {
    case 4: gather_rows((const uint32_t *)src, (uint32_t *)dst, shape, strides); break;
    case 2: gather_rows((const uint16_t *)src, (uint16_t *)dst, shape, strides); break;
    default: gather_rows((const uint8_t *)src, (uint8_t *)dst, shape, strides); break;
    }
  });
  return copy;
}

// The start of every eval_cpu here: the stream's encoder told about the inputs and the
// output, and the output's memory allocated (by MLX, which caches it)
static mx::cpu::CommandEncoder &begin_eval(mx::Stream s, const std::vector<mx::array> &inputs,
                                           mx::array &out) {
  auto &enc = mx::cpu::get_command_encoder(s);
  for (const auto &a : inputs) enc.set_input_array(a);
  enc.set_output_array(out);
  out.set_data(mx::allocator::malloc(out.nbytes()));
  return enc;
}

// a function address passed through a kernel's integer arguments (the BLAS's)
static void *address(int64_t value) {
  return reinterpret_cast<void *>(static_cast<uintptr_t>(value));
}

// The base of the nodes here: the C kernels run on the CPU stream only (the Python side
// calls MLX's own operations on other devices)
class CpuKernel : public mx::UnaryPrimitive {
 public:
  using mx::UnaryPrimitive::UnaryPrimitive;
  void eval_gpu(const std::vector<mx::array> &, mx::array &) override {
    throw std::runtime_error(std::string("mlx_audio_io ") + name() + ": CPU only");
  }
};

// x @ w.T (+ bias): x [..., k] float32, w [n, k] float32, bias [n]; or, input_major,
// x @ w: w [k, n] (no bias)
class AioLinear : public CpuKernel {
 public:
  AioLinear(mx::Stream s, bool has_bias, int threads, bool input_major)
      : CpuKernel(s), has_bias_(has_bias), threads_(threads),
        input_major_(input_major) {}

  void eval_cpu(const std::vector<mx::array> &inputs, mx::array &out) override {
    auto &enc = begin_eval(stream(), inputs, out);
    auto x = row_major(inputs[0], enc), w = row_major(inputs[1], enc);
    int64_t k = w.shape(input_major_ ? 0 : 1), n = w.shape(input_major_ ? 1 : 0);
    int64_t m = k ? x.size() / k : 0;
    std::optional<mx::array> b;
    if (has_bias_) b = row_major(inputs[2], enc);
    const float *bias = b ? b->data<float>() : nullptr;
    enc.dispatch([x = x.data<float>(), w = w.data<float>(), bias, o = out.data<float>(), m, k,
                  n, t = threads_, im = input_major_]() {
      char err[512] = {0};
      if (im) {
        if (g_matmul.load()(x, m, k, w, n, o, t, err) < 0) kernel_failed("aio_nn_matmul", err);
      } else if (g_linear.load()(x, m, k, w, n, bias, o, t, err) < 0) {
        kernel_failed("aio_nn_linear", err);
      }
    });
  }
  const char *name() const override { return "AioLinear"; }
  bool is_equivalent(const mx::Primitive &other) const override {
    auto &o = static_cast<const AioLinear &>(other);
    return has_bias_ == o.has_bias_ && threads_ == o.threads_ && input_major_ == o.input_major_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array> &inputs) override {
    auto shape = inputs[0].shape();
    shape.back() = inputs[1].shape(input_major_ ? 1 : 0);
    return {shape};
  }

 private:
  bool has_bias_;
  int threads_;
  bool input_major_;
};

// x @ dequantize(w, scales, biases).T in MLX's affine layout: x [..., k] float32, w uint32
// [n, k * bits / 32], scales and biases [n, k / group_size] (float32, float16 or bfloat16)
class AioQuantizedMatmul : public CpuKernel {
 public:
  AioQuantizedMatmul(mx::Stream s, int dtype, int group_size, int bits, int threads)
      : CpuKernel(s), dtype_(dtype), group_size_(group_size), bits_(bits),
        threads_(threads) {}

  void eval_cpu(const std::vector<mx::array> &inputs, mx::array &out) override {
    auto &enc = begin_eval(stream(), inputs, out);
    auto x = row_major(inputs[0], enc), w = row_major(inputs[1], enc);
    auto scales = row_major(inputs[2], enc);
    auto biases = row_major(inputs[3], enc);
    int64_t n = w.shape(0), k = w.shape(1) * 32 / bits_, m = x.size() / k;
    enc.dispatch([x = x.data<float>(), w = w.data<uint32_t>(), s = scales.data<void>(),
                  b = biases.data<void>(), o = out.data<float>(), m, k, n, d = dtype_,
                  g = group_size_, bits = bits_, t = threads_]() {
      char err[512] = {0};
      if (g_qmm.load()(x, m, k, w, s, b, d, n, g, bits, o, t, err) < 0)
        kernel_failed("aio_nn_quantized_matmul", err);
    });
  }
  const char *name() const override { return "AioQuantizedMatmul"; }
  bool is_equivalent(const mx::Primitive &other) const override {
    auto &o = static_cast<const AioQuantizedMatmul &>(other);
    return dtype_ == o.dtype_ && group_size_ == o.group_size_ && bits_ == o.bits_ &&
           threads_ == o.threads_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array> &inputs) override {
    auto shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 private:
  int dtype_, group_size_, bits_, threads_;
};

// [outer, rows, mid] runs of x's leading axes (all but the channel axis), in elements, as
// mlx_audio_io.nn._as_3d: split = (first rows axis, first mid axis), or any grouping when
// split0 < 0. False when x's layout does not fit (then it is copied to rows first).
static bool layout3(const mx::array &x, int split0, int split1, int64_t dims[3],
                    int64_t strides[3]) {
  const int nd = static_cast<int>(x.ndim());
  if (x.shape(nd - 1) != 1 && x.strides()[nd - 1] != 1) return false;
  auto runs = [&](int a, int b) {
    std::vector<std::pair<int64_t, int64_t>> r;
    for (int i = a; i < b; i++) {
      int64_t n = x.shape(i), st = x.strides()[i];
      if (n == 1) continue;
      if (!r.empty() && r.back().second == st * n)
        r.back() = {r.back().first * n, st};
      else
        r.push_back({n, st});
    }
    return r;
  };
  std::vector<std::pair<int64_t, int64_t>> out;
  if (split0 < 0) {
    auto r = runs(0, nd - 1);
    if (r.size() > 3) return false;
    const std::pair<int64_t, int64_t> one{1, 0};
    if (r.size() == 0) out = {one, one, one};
    if (r.size() == 1) out = {one, r[0], one}; // one run goes to rows: split between threads
    if (r.size() == 2) out = {one, r[0], r[1]};
    if (r.size() == 3) out = r;
  } else {
    int bounds[4] = {0, split0, split1, nd - 1};
    for (int i = 0; i < 3; i++) {
      auto r = runs(bounds[i], bounds[i + 1]);
      if (r.size() > 1) return false;
      out.push_back(r.empty() ? std::pair<int64_t, int64_t>{1, 0} : r[0]);
    }
  }
  for (int i = 0; i < 3; i++) dims[i] = out[i].first, strides[i] = out[i].second;
  return true;
}

// The fused element-wise, convolution, depthwise and attention kernels (aio_nn_norm_act,
// aio_nn_conv2d, aio_nn_depthwise_conv1d, aio_nn_attention_window) as one graph node each:
// float32 in and out, operands that are None in Python left out of the inputs (`present`
// says which of the kernel's array operands are there, in its order), the rest of the
// arguments as integers and floats.
class AioKernel : public CpuKernel {
 public:
  enum Kind { NormAct = 0, Conv2d = 1, Depthwise = 2, Attention = 3 };
  AioKernel(mx::Stream s, int kind, std::vector<bool> present, std::vector<int64_t> ints,
            std::vector<double> floats, int threads)
      : CpuKernel(s), kind_(kind), present_(std::move(present)),
        ints_(std::move(ints)), floats_(std::move(floats)), threads_(threads) {}

  void eval_cpu(const std::vector<mx::array> &inputs, mx::array &out) override {
    auto &enc = begin_eval(stream(), inputs, out);
    if (out.size() == 0) return;
    // operand i of the kernel: its (row-major unless it is x of norm_act) data, or NULL; the
    // inputs stay alive until the kernel has run, and row_major's copies too
    std::vector<const float *> ptr;
    size_t next = 0;
    int64_t xdims[3] = {0, 0, 0}, xstrides[3] = {0, 0, 0};
    for (size_t i = 0; i < present_.size(); i++) {
      if (!present_[i]) {
        ptr.push_back(nullptr);
        continue;
      }
      mx::array a = inputs[next++];
      if (i == 0 && kind_ == NormAct) {  // x read in place through its strides when it fits
        if (!layout3(a, int(ints_[0]), int(ints_[1]), xdims, xstrides)) {
          a = row_major(a, enc);
          layout3(a, int(ints_[0]), int(ints_[1]), xdims, xstrides);
        }
      } else {
        a = row_major(a, enc);
      }
      ptr.push_back(a.data<float>());
    }
    float *o = out.data<float>();
    auto ints = ints_;
    auto floats = floats_;
    int t = threads_;
    if (kind_ == NormAct) {
      // operands: x, proj, x_bias, weight, bias, act_param, residual, res_scale
      // ints: split0, split1, k_in, channels, groups, normalize, act
      enc.dispatch([ptr, o, ints, floats, t, d0 = xdims[0], d1 = xdims[1], d2 = xdims[2],
                    s0 = xstrides[0], s1 = xstrides[1], s2 = xstrides[2]]() {
        char err[512] = {0};
        int64_t strides[3] = {s0, s1, s2};
        if (g_norm_act.load()(ptr[0], strides, ptr[1], ints[2], ptr[2], o, d0, d1, d2, ints[3],
                              ints[4], int(ints[5]), float(floats[0]), ptr[3], ptr[4],
                              int(ints[6]), ptr[5], ptr[6], ptr[7], t, err) < 0)
          kernel_failed("aio_nn_norm_act", err);
      });
    } else if (kind_ == Conv2d) {
      // operands: x, skip, weight, bias; ints: sgemm, set_threads, get_threads, n, h, w, c_in,
      // c_out, kh, kw, ph, pw, dh, dw, act
      enc.dispatch([ptr, o, ints, t]() {
        char err[512] = {0};
        if (g_conv2d.load()(address(ints[0]), address(ints[1]), address(ints[2]), ptr[0],
                            ptr[1], ints[3], ints[4], ints[5], ints[6], ptr[2], ints[7],
                            ints[8], ints[9], ints[10], ints[11], ints[12], ints[13], ptr[3],
                            int(ints[14]), o, t, err) < 0)
          kernel_failed("aio_nn_conv2d", err);
      });
    } else if (kind_ == Attention) {
      // operands: q, k, v; ints: sgemm, set_threads, get_threads, batch, heads, lq, lk, d,
      // block, q_start, k_start, window; floats: scale
      enc.dispatch([ptr, o, ints, floats, t]() {
        char err[512] = {0};
        if (g_attention.load()(address(ints[0]), address(ints[1]), address(ints[2]), ptr[0],
                               ptr[1], ptr[2], o, ints[3], ints[4], ints[5], ints[6], ints[7],
                               float(floats[0]), ints[8], ints[9], ints[10], ints[11], t,
                               err) < 0)
          kernel_failed("aio_nn_attention_window", err);
      });
    } else {
      // operands: x, weight [taps][channels], bias, act_param; ints: n, length, channels,
      // taps, padding, dilation, act, out_len
      enc.dispatch([ptr, o, ints, t]() {
        char err[512] = {0};
        if (g_depthwise.load()(ptr[0], ints[0], ints[1], ints[2], ptr[1], ints[3], ints[4],
                               ints[5], ptr[2], int(ints[6]), ptr[3], o, ints[7], t, err) < 0)
          kernel_failed("aio_nn_depthwise_conv1d", err);
      });
    }
  }
  const char *name() const override { return "AioKernel"; }
  bool is_equivalent(const mx::Primitive &other) const override {
    auto &o = static_cast<const AioKernel &>(other);
    return kind_ == o.kind_ && present_ == o.present_ && ints_ == o.ints_ &&
           floats_ == o.floats_ && threads_ == o.threads_;
  }

 private:
  int kind_;
  std::vector<bool> present_;
  std::vector<int64_t> ints_;
  std::vector<double> floats_;
  int threads_;
};

static mx::Stream cpu_stream() { return mx::to_stream({}, mx::Device::cpu); }

// float32 (no copy when it already is; made row-major at evaluation: row_major)
static mx::array f32(const mx::array &a, mx::Stream s) { return mx::astype(a, mx::float32, s); }

static mx::array linear(const mx::array &x, const mx::array &w,
                        const std::optional<mx::array> &bias, int threads) {
  check_kernels();
  if (x.ndim() < 1 || w.ndim() != 2 || x.shape(-1) != w.shape(1) || w.shape(1) == 0)
    throw std::invalid_argument("linear: x [..., k] and w [n, k] with k > 0 required");
  if (bias && (bias->ndim() != 1 || bias->shape(0) != w.shape(0)))
    throw std::invalid_argument("linear: bias must be [n]");
  auto s = cpu_stream();
  std::vector<mx::array> ins{f32(x, s), f32(w, s)};
  if (bias) ins.push_back(f32(*bias, s));
  auto shape = x.shape();
  shape.back() = w.shape(0);
  return mx::array(shape, mx::float32,
                   std::make_shared<AioLinear>(s, bool(bias), threads, false), std::move(ins));
}

static mx::array matmul(const mx::array &x, const mx::array &w, int threads) {
  check_kernels();
  if (x.ndim() < 1 || w.ndim() != 2 || x.shape(-1) != w.shape(0) || w.shape(0) == 0)
    throw std::invalid_argument("matmul: x [..., k] and w [k, n] with k > 0 required");
  auto s = cpu_stream();
  auto shape = x.shape();
  shape.back() = w.shape(1);
  return mx::array(shape, mx::float32, std::make_shared<AioLinear>(s, false, threads, true),
                   {f32(x, s), f32(w, s)});
}

static mx::array quantized_matmul(const mx::array &x, const mx::array &w,
                                  const mx::array &scales, const mx::array &biases, int dtype,
                                  int group_size, int bits, int threads) {
  check_kernels();
  if ((bits != 4 && bits != 8) || (group_size != 32 && group_size != 64 && group_size != 128))
    throw std::invalid_argument("quantized_matmul: bits 4 or 8, group size 32, 64 or 128");
  if (x.ndim() < 1 || w.ndim() != 2 || w.dtype() != mx::uint32 ||
      x.shape(-1) != w.shape(1) * 32 / bits || x.shape(-1) % group_size || x.shape(-1) == 0)
    throw std::invalid_argument("quantized_matmul: x [..., k] and packed w [n, k * bits / 32]");
  mx::Dtype want = dtype == 0 ? mx::float32 : dtype == 1 ? mx::float16 : mx::bfloat16;
  mx::Shape pshape{w.shape(0), x.shape(-1) / group_size};
  if (dtype < 0 || dtype > 2 || scales.dtype() != want || biases.dtype() != want ||
      scales.shape() != pshape || biases.shape() != pshape)
    throw std::invalid_argument("quantized_matmul: scales and biases [n, k / group_size]");
  auto s = cpu_stream();
  std::vector<mx::array> ins{f32(x, s), w, scales, biases};
  auto shape = x.shape();
  shape.back() = w.shape(0);
  return mx::array(shape, mx::float32,
                   std::make_shared<AioQuantizedMatmul>(s, dtype, group_size, bits, threads),
                   std::move(ins));
}

// A graph node of kernel `kind` with output shape `shape` (float32): the operands (None left
// out), the integer and float arguments as the kind reads them.
static mx::array kernel(int kind, const std::vector<std::optional<mx::array>> &operands,
                        const std::vector<int> &shape, const std::vector<int64_t> &ints,
                        const std::vector<double> &floats, int threads) {
  check_kernels();
  static const size_t want[4] = {8, 4, 4, 3}, nints[4] = {7, 15, 8, 12};
  static const size_t nfloats[4] = {1, 0, 0, 1};
  if (kind < 0 || kind > 3 || operands.size() != want[kind] || ints.size() != nints[kind] ||
      floats.size() != nfloats[kind] || !operands[0])
    throw std::invalid_argument("kernel: bad kind or argument count");
  auto s = cpu_stream();
  std::vector<bool> present;
  std::vector<mx::array> ins;
  for (const auto &a : operands) {
    present.push_back(bool(a));
    if (a) ins.push_back(f32(*a, s));
  }
  return mx::array(mx::Shape(shape.begin(), shape.end()), mx::float32,
                   std::make_shared<AioKernel>(s, kind, present, ints, floats, threads),
                   std::move(ins));
}

// An evaluated float32 array of `shape` whose memory is allocated but not written (a loader
// fills it in one pass). Large buffers ask the kernel for transparent huge pages before the
// first touch: one fault per 2 MiB instead of one per 4 KiB (NumPy does the same).
static mx::array empty(const std::vector<int> &shape, bool hugepages) {
  size_t bytes = sizeof(float);
  for (int d : shape) {
    if (d < 0) throw std::invalid_argument("empty: negative dimension");
    bytes *= size_t(d);
  }
  auto data = mx::allocator::malloc(bytes);
  const uintptr_t huge = uintptr_t(2) << 20;
  auto *p = static_cast<char *>(data.buffer().raw_ptr());
  if (hugepages && p != nullptr && bytes >= 2 * huge) {
    uintptr_t start = (uintptr_t(p) + huge - 1) & ~(huge - 1);
    uintptr_t end = (uintptr_t(p) + bytes) & ~(huge - 1);
    if (end > start) madvise(reinterpret_cast<void *>(start), end - start, MADV_HUGEPAGE);
  }
  return mx::array(std::move(data), mx::Shape(shape.begin(), shape.end()), mx::float32);
}

// --- plain loads: open, allocate, read and close in one call ------------------------------
// A short load through Python costs ~15 us around the native read (argument objects, the
// source and its finalizer, the output, the close); this is the same work in one call, for
// the plain case (a path, the file's rate and channels, channels last, float32). The io
// functions come from the cffi extension, as the kernels do (set_io).
extern "C" {
#include "io.cdef.h"
}
typedef int (*source_open_fn)(aio_source *, const char *, const void *, int64_t, const char *);
typedef int64_t (*pipe_read_fn)(aio_pipe *, float *, int64_t, int64_t, int64_t, char *);
typedef void (*source_close_fn)(aio_source *);
static std::atomic<source_open_fn> g_source_open{nullptr};
static std::atomic<pipe_read_fn> g_pipe_read{nullptr};
static std::atomic<source_close_fn> g_source_close{nullptr};

// (0, array, sample rate) when loaded; (1, None, 0) when the caller's general path should do
// it (at least split_frames of a codec in split_codecs: it decodes those in segments, one per
// core); (rc < 0, message, 0) on an error, for Python to raise as it raises every native
// error. A length the file does not state is read in pieces of 65536 frames and copied once,
// as the general path does.
static nb::tuple load_plain(const nb::bytes &path, double offset, double duration,
                            int64_t split_frames, const std::vector<std::string> &split_codecs) {
  auto open = g_source_open.load();
  auto read = g_pipe_read.load();
  auto close = g_source_close.load();
  if (!open || !read || !close) throw std::runtime_error("load_plain: set_io was not called");
  aio_source s{};
  s.offset = offset;
  s.duration = duration;
  s.start = -1;
  s.count = -1;
  s.quality = 3;
  int rc;
  {
    nb::gil_scoped_release nogil;
    rc = open(&s, path.c_str(), nullptr, 0, nullptr);
  }
  if (rc != 0) return nb::make_tuple(rc, nb::str(s.err), 0);
  int64_t total = s.total, ch = s.info.channels, n = 0;
  bool split = total >= split_frames &&
               std::find(split_codecs.begin(), split_codecs.end(), s.info.subtype) !=
                   split_codecs.end();
  if (split || total > INT32_MAX) {
    close(&s);
    return nb::make_tuple(1, nb::none(), 0);
  }
  std::optional<mx::array> out;
  if (total >= 0) {
    out = empty({int(total), int(ch)}, true);
    nb::gil_scoped_release nogil;
    n = total > 0 ? read(s.pipe, out->data<float>(), total, ch, 1, s.err) : 0;
  } else {
    const int64_t step = 1 << 16;
    std::vector<float> pieces;
    {
      nb::gil_scoped_release nogil;
      for (int64_t got = step; got == step && n <= INT32_MAX;) {
        pieces.resize(size_t((n + step) * ch));
        got = read(s.pipe, pieces.data() + n * ch, step, ch, 1, s.err);
        if (got < 0) {
          n = got;
          break;
        }
        n += got;
      }
    }
    if (n > INT32_MAX) {
      close(&s);
      return nb::make_tuple(1, nb::none(), 0);
    }
    if (n >= 0) {
      total = n;
      out = empty({int(n), int(ch)}, true);
      if (n > 0) std::memcpy(out->data<float>(), pieces.data(), sizeof(float) * size_t(n * ch));
    }
  }
  std::string err(s.err);
  int rate = s.info.sample_rate;
  close(&s);
  if (n < 0) return nb::make_tuple(int(n), nb::str(err.c_str()), 0);
  if (n < total) {  // the file ended early (truncated): the frames it held
    out = mx::slice(*out, {0, 0}, {int(n), int(ch)});
    mx::eval(*out);
  }
  return nb::make_tuple(0, nb::cast(*out), rate);
}

// info() on a path in one call: aio_probe, then the AudioInfo filled here (its class is a
// frozen dataclass: object.__new__ and the instance dict, as the Python path does).
typedef int (*probe_fn)(const char *, aio_source *);
static std::atomic<probe_fn> g_probe{nullptr};
static nb::object g_info_type;
static nb::object g_info_keys[6];

// path: a str, its UTF-8 bytes being the file system's (the caller checks that the file
// system encoding is UTF-8). A name with a NUL or a lone surrogate gives (1, ""): the
// general path words that error or encodes it with surrogateescape.
static nb::object info_plain(const nb::str &path) {
  auto probe = g_probe.load();
  if (!probe || !g_info_type.is_valid()) throw std::runtime_error("info_plain: set_io was not called");
  Py_ssize_t len = 0;
  const char *name = PyUnicode_AsUTF8AndSize(path.ptr(), &len);
  if (name == nullptr || std::strlen(name) != size_t(len)) {
    PyErr_Clear();
    return nb::make_tuple(1, nb::str(""));
  }
  aio_source s{};
  int rc;
  {
    nb::gil_scoped_release nogil;
    rc = probe(name, &s);
  }
  if (rc != 0) return nb::make_tuple(rc, nb::str(s.err));
  auto *type = reinterpret_cast<PyTypeObject *>(g_info_type.ptr());
  nb::object out = nb::steal(type->tp_alloc(type, 0));
  if (!out.is_valid()) throw nb::python_error();
  nb::object dict = nb::steal(PyObject_GenericGetDict(out.ptr(), nullptr));
  if (!dict.is_valid()) throw nb::python_error();
  int64_t frames = s.total;
  int rate = s.info.sample_rate;
  nb::object values[6] = {
      nb::steal(PyLong_FromLongLong(frames)),
      nb::steal(PyLong_FromLong(rate)),
      nb::steal(PyLong_FromLong(s.info.channels)),
      nb::steal(PyFloat_FromDouble(rate > 0 ? double(frames) / double(rate) : 0.0)),
      nb::steal(PyUnicode_FromString(s.info.subtype)),
      nb::steal(PyUnicode_FromString(s.info.container)),
  };
  for (int i = 0; i < 6; i++)  // the dataclass's fields, in its order (interned names)
    if (!values[i].is_valid() || PyDict_SetItem(dict.ptr(), g_info_keys[i].ptr(),
                                                values[i].ptr()) != 0)
      throw nb::python_error();
  return out;
}

NB_MODULE(_prim, m) {
  m.doc() = "mlx_audio_io's C kernels as MLX graph nodes (CPU stream).";
  m.def("set_kernels",
        [](uintptr_t linear_addr, uintptr_t qmm_addr, uintptr_t matmul_addr,
           uintptr_t norm_act_addr, uintptr_t conv2d_addr, uintptr_t depthwise_addr,
           uintptr_t attention_addr) {
          g_linear.store(reinterpret_cast<linear_fn>(linear_addr));
          g_qmm.store(reinterpret_cast<qmm_fn>(qmm_addr));
          g_matmul.store(reinterpret_cast<matmul_fn>(matmul_addr));
          g_norm_act.store(reinterpret_cast<norm_act_fn>(norm_act_addr));
          g_conv2d.store(reinterpret_cast<conv2d_fn>(conv2d_addr));
          g_depthwise.store(reinterpret_cast<depthwise_fn>(depthwise_addr));
          g_attention.store(reinterpret_cast<attention_fn>(attention_addr));
        },
        nb::arg("linear"), nb::arg("quantized_matmul"), nb::arg("matmul"), nb::arg("norm_act"),
        nb::arg("conv2d"), nb::arg("depthwise_conv1d"), nb::arg("attention"),
        "Uses the kernels at these addresses (aio_nn_linear, aio_nn_quantized_matmul, "
        "aio_nn_matmul, aio_nn_norm_act, aio_nn_conv2d, aio_nn_depthwise_conv1d, "
        "aio_nn_attention_window).");
  m.def("kernel", &kernel, nb::arg("kind"), nb::arg("operands"), nb::arg("shape"),
        nb::arg("ints"), nb::arg("floats"), nb::arg("threads"),
        "Kernel `kind` (0 norm_act, 1 conv2d, 2 depthwise_conv1d, 3 attention_window) as a "
        "graph node (float32).");
  m.def("linear", &linear, nb::arg("x"), nb::arg("w"), nb::arg("bias").none(),
        nb::arg("threads"), "x @ w.T (+ bias), float32, as a graph node on the CPU stream.");
  m.def("matmul", &matmul, nb::arg("x"), nb::arg("w"), nb::arg("threads"),
        "x @ w for w [k, n], float32, as a graph node on the CPU stream.");
  m.def("quantized_matmul", &quantized_matmul, nb::arg("x"), nb::arg("w"), nb::arg("scales"),
        nb::arg("biases"), nb::arg("dtype"), nb::arg("group_size"), nb::arg("bits"),
        nb::arg("threads"),
        "x @ dequantize(w).T (affine, transposed), float32 out, as a graph node.");
  m.def("set_io",
        [](uintptr_t open_addr, uintptr_t read_addr, uintptr_t close_addr, uintptr_t probe_addr,
           nb::object info_type) {
          g_source_open.store(reinterpret_cast<source_open_fn>(open_addr));
          g_pipe_read.store(reinterpret_cast<pipe_read_fn>(read_addr));
          g_source_close.store(reinterpret_cast<source_close_fn>(close_addr));
          g_probe.store(reinterpret_cast<probe_fn>(probe_addr));
          g_info_type = info_type;
          const char *names[6] = {"frames", "sample_rate", "channels", "duration", "subtype",
                                  "container"};
          for (int i = 0; i < 6; i++) g_info_keys[i] = nb::steal(PyUnicode_InternFromString(names[i]));
        },
        nb::arg("source_open"), nb::arg("pipe_read"), nb::arg("source_close"),
        nb::arg("probe"), nb::arg("info_type"),
        "Uses the io functions at these addresses (aio_source_open, aio_pipe_read, "
        "aio_source_close, aio_probe), and info_type (AudioInfo) for info_plain.");
  m.def("info_plain", &info_plain, nb::arg("path"),
        "info(path) in one call: an AudioInfo, or (code, message) on an error.");
  m.def("load_plain", &load_plain, nb::arg("path"), nb::arg("offset"), nb::arg("duration"),
        nb::arg("split_frames"), nb::arg("split_codecs"),
        "load(path, offset=, duration=) with every other argument at its default, in one "
        "call: (0, array, sample rate), (1, None, 0) to take the general path, or (code, "
        "message, 0) on an error. duration < 0 reads to the end.");
  m.def("empty", &empty, nb::arg("shape"), nb::arg("hugepages") = true,
        "An evaluated float32 array of this shape, its memory not written (huge pages asked "
        "for when it is large).");
  m.attr("MLX_VERSION") = MLX_BUILD_VERSION;
}
