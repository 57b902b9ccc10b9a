/* Fused CPU kernels for model layers (mlx_audio_io.nn).

   MLX's Linux CPU build runs element-wise chains one operation at a time, each a pass over
   memory, and its exp/erf one element at a time. A GroupNorm followed by a GELU or a GLU and a
   scaled residual add is a dozen such passes; here it is two (statistics, then one fused
   write), vectorised, on a few threads. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "aio.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
/* one build for every x86-64 machine, with AVX2/AVX-512 loops picked at load time */
#define AIO_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AIO_CLONES
#endif

#define MAX_THREADS 16
#define PAD_F(n) (((n) + 31) / 32 * 32) /* floats, rounded up to 128 bytes */
#define PAD_D(n) (((n) + 15) / 16 * 16) /* doubles, likewise */
#define VEC_ROWS 512 /* floats: narrow rows are applied this many at a time */
#define MIN_PER_THREAD 65536 /* elements; below this a thread costs more than it saves */

/* exp(x) for x in float range: 2^n * p(r), |r| <= ln2 / 2, degree-7 Taylor (rel. error < 1e-7).
   Branch-free so that the loops calling it vectorise (with -fno-trapping-math). */
static inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : x; /* not fminf/fmaxf: their NaN rules keep GCC from vectorising */
    x = x > 88.3f ? 88.3f : x;
    float n = floorf(x * 1.44269504f + 0.5f);
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Exact (erf) GELU; erf from Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7). */
static inline float gelu_erf(float x) {
    float z = fabsf(x) * 0.70710678f;
    float t = 1.f / (1.f + 0.3275911f * z);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float erf_abs = 1.f - p * t * exp_approx(-z * z);
    return 0.5f * x * (1.f + copysignf(erf_abs, x));
}

/* torch's GELU(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), with
   tanh(u) = 1 - 2 / (exp(2u) + 1). */
static inline float gelu_tanh(float x) {
    float u = 0.7978845608f * (x + 0.044715f * x * x * x);
    float th = 1.f - 2.f / (exp_approx(2.f * u) + 1.f);
    return 0.5f * x * (1.f + th);
}

static inline float sigmoid(float x) { return 1.f / (1.f + exp_approx(-x)); }

/* sin(y)^2 (period pi, even): y reduced by the nearest multiple of pi in double, then sin's
   Taylor series to r^11 on [-pi/2, pi/2] (absolute error < 6e-8). Branch-free. */
static inline float sin2_approx(float y) {
    double n = floor((double)y * 0.31830988618379067 + 0.5);
    float r = (float)((double)y - n * 3.141592653589793);
    float r2 = r * r;
    float p = -2.5052108e-8f;
    p = p * r2 + 2.7557319e-6f;
    p = p * r2 - 1.9841270e-4f;
    p = p * r2 + 8.3333333e-3f;
    p = p * r2 - 1.6666667e-1f;
    p = p * r2 + 1.f;
    float s = r * p;
    return s * s;
}

/* Snake (x + sin(alpha x)^2 / alpha, per-channel alpha), as BigVGAN and iSTFTNet write it. */
static inline float snake(float x, float alpha) { return x + (1.f / alpha) * sin2_approx(alpha * x); }

static inline float leaky(float x, float slope) { return x > 0.f ? x : x * slope; }

/* torch's ELU (alpha 1): x, or exp(x) - 1 for x <= 0; above -1/4 expm1's Taylor series to x^6
   (relative error < 1e-7), where exp(x) - 1 would lose the small values' precision.
   Branch-free, so the loops vectorise. */
static inline float elu(float x) {
    float t = 1.f / 720.f;
    t = t * x + 1.f / 120.f;
    t = t * x + 1.f / 24.f;
    t = t * x + 1.f / 6.f;
    t = t * x + 0.5f;
    t = t * x + 1.f;
    float e = exp_approx(x) - 1.f, m = x > -0.25f ? t * x : e;
    return x > 0.f ? x : m;
}

typedef struct {
    /* the problem */
    const float *x, *x_bias;
    float *out;
    const float *residual, *res_scale;
    int64_t rows, mid, channels, groups;
    int64_t row_stride, mid_stride; /* of x, in floats; channels are contiguous */
    const float *proj;              /* x = h @ proj ([k_in][channels]) with h at x, or NULL */
    int64_t k_in;
    float *tmp;                     /* this thread's projected row (channels floats) */
    int64_t thread_stride;          /* floats from one thread's tmp to the next one's */
    /* dense statistics (rows contiguous over mid x channels, small groups): per element
       shift, and this thread's float and double accumulators (2 * mid * channels each) */
    const float *shift_e;
    float *facc;
    double *dacc;
    int act;
    const float *act_param; /* AIO_NN_SNAKE: alpha per channel; AIO_NN_LEAKY: the slope */
    /* statistics phase: per (mid, group) shift and this thread's sums */
    const float *shift;
    double *sum, *sq;
    /* apply phase: per (mid, channel) scale and offset, or per channel when mid_affine == 0 */
    const float *a, *b;
    int mid_affine;
    /* this thread's rows */
    int64_t r0, r1;
} nn_job;

/* Row (r, m) of x: in place, or projected from h into j->tmp (blocks of 64 outputs kept in
   registers across the k_in inputs). */
AIO_CLONES
static const float *fetch_row(const nn_job *j, const float *base, int64_t r, int64_t m) {
    const float *at = base + r * j->row_stride + m * j->mid_stride;
    if (!j->proj) return at;
    int64_t ch = j->channels, c0 = 0;
    float *dst = j->tmp;
    for (; c0 + 64 <= ch; c0 += 64) {
        float acc[64] = {0};
        for (int64_t k = 0; k < j->k_in; k++) {
            float hk = at[k];
            const float *w = j->proj + k * ch + c0;
            for (int c = 0; c < 64; c++) acc[c] += hk * w[c];
        }
        for (int c = 0; c < 64; c++) dst[c0 + c] = acc[c];
    }
    for (int64_t c = c0; c < ch; c++) dst[c] = 0.f;
    for (int64_t k = 0; k < j->k_in && c0 < ch; k++) {
        float hk = at[k];
        const float *w = j->proj + k * ch;
        for (int64_t c = c0; c < ch; c++) dst[c] += hk * w[c];
    }
    return dst;
}

AIO_CLONES
static void stats_rows(nn_job *j) {
    int64_t cg = j->channels / j->groups;
    for (int64_t r = j->r0; r < j->r1; r++) {
        for (int64_t m = 0; m < j->mid; m++) {
            const float *row = fetch_row(j, j->x, r, m);
            for (int64_t g = 0; g < j->groups; g++) {
                int64_t s = m * j->groups + g;
                const float *p = row + g * cg;
                const float *xb = j->x_bias ? j->x_bias + g * cg : NULL;
                /* 16 independent lanes, so that the sums vectorise (one float accumulator
                   is a chain GCC must keep in order) */
                float k = j->shift[s], l1[16] = {0}, l2[16] = {0}, acc = 0.f, acc2 = 0.f;
                int64_t c = 0;
                for (; c + 16 <= cg; c += 16)
                    for (int i = 0; i < 16; i++) {
                        float d = p[c + i] + (xb ? xb[c + i] : 0.f) - k;
                        l1[i] += d;
                        l2[i] += d * d;
                    }
                for (; c < cg; c++) {
                    float d = p[c] + (xb ? xb[c] : 0.f) - k;
                    acc += d;
                    acc2 += d * d;
                }
                for (int i = 0; i < 16; i++) {
                    acc += l1[i];
                    acc2 += l2[i];
                }
                j->sum[s] += acc;
                j->sq[s] += acc2;
            }
        }
    }
}

/* The statistics with small channel groups: each row of mid x channels is one long vector
   added element-wise into float accumulators (flushed to double every 64 rows), reduced to
   the groups at the end; the per-slot loops would run a handful of elements each. */
AIO_CLONES
static void stats_dense(nn_job *j) {
    int64_t w = j->mid * j->channels, cg = j->channels / j->groups, since = 0;
    float *f1 = j->facc, *f2 = f1 + w;
    double *d1 = j->dacc, *d2 = d1 + w;
    const float *se = j->shift_e;
    for (int64_t i = 0; i < w; i++) f1[i] = f2[i] = 0.f, d1[i] = d2[i] = 0.0;
    for (int64_t r = j->r0; r < j->r1; r++) {
        const float *row = j->x + r * j->row_stride;
        for (int64_t i = 0; i < w; i++) {
            float d = row[i] - se[i];
            f1[i] += d;
            f2[i] += d * d;
        }
        if (++since == 64 || r == j->r1 - 1) {
            for (int64_t i = 0; i < w; i++) {
                d1[i] += f1[i];
                d2[i] += f2[i];
                f1[i] = f2[i] = 0.f;
            }
            since = 0;
        }
    }
    for (int64_t s = 0; s < j->mid * j->groups; s++) {
        double acc = 0, acc2 = 0;
        for (int64_t c = 0; c < cg; c++) {
            acc += d1[s * cg + c];
            acc2 += d2[s * cg + c];
        }
        j->sum[s] += acc;
        j->sq[s] += acc2;
    }
}

AIO_CLONES
static void apply_rows(nn_job *j) {
    if (j->mid_affine && !j->proj && j->act <= AIO_NN_GELU_TANH && !j->residual &&
        j->mid_stride == j->channels) { /* rows of mid x channels as one vector */
        int64_t w = j->mid * j->channels, step = 1;
        const float *a = j->a, *b = j->b;
        /* narrow rows (a DConv's 6 channels over 86,000 frames) that lie one after another:
           several at a time, against a and b repeated, so the loop is long enough to
           vectorise */
        float arep[VEC_ROWS], brep[VEC_ROWS];
        if (j->row_stride == w && 2 * w <= VEC_ROWS) {
            step = VEC_ROWS / w;
            for (int64_t i = 0; i < step * w; i++) arep[i] = a[i % w], brep[i] = b[i % w];
            a = arep;
            b = brep;
        }
        for (int64_t r = j->r0; r < j->r1; r += step) {
            const float *xr = j->x + r * j->row_stride;
            float *o = j->out + r * w;
            int64_t n = (j->r1 - r < step ? j->r1 - r : step) * w;
            if (j->act == AIO_NN_GELU)
                for (int64_t i = 0; i < n; i++) o[i] = gelu_erf(xr[i] * a[i] + b[i]);
            else if (j->act == AIO_NN_GELU_TANH)
                for (int64_t i = 0; i < n; i++) o[i] = gelu_tanh(xr[i] * a[i] + b[i]);
            else
                for (int64_t i = 0; i < n; i++) o[i] = xr[i] * a[i] + b[i];
        }
        return;
    }
    int64_t ch = j->channels, half = ch / 2;
    int64_t c_out = j->act == AIO_NN_GLU ? half : ch;
    for (int64_t r = j->r0; r < j->r1; r++) {
        for (int64_t m = 0; m < j->mid; m++) {
            int64_t at = r * j->mid + m;
            const float *xr = fetch_row(j, j->x, r, m);
            const float *a = j->a + (j->mid_affine ? m * ch : 0);
            const float *b = j->b + (j->mid_affine ? m * ch : 0);
            float *o = j->out + at * c_out;
            const float *res = j->residual ? j->residual + at * c_out : NULL;
            switch (j->act) {
            case AIO_NN_GELU:
                for (int64_t c = 0; c < ch; c++) o[c] = gelu_erf(xr[c] * a[c] + b[c]);
                break;
            case AIO_NN_GELU_TANH:
                for (int64_t c = 0; c < ch; c++) o[c] = gelu_tanh(xr[c] * a[c] + b[c]);
                break;
            case AIO_NN_GLU:
                for (int64_t c = 0; c < half; c++)
                    o[c] = (xr[c] * a[c] + b[c]) * sigmoid(xr[c + half] * a[c + half] + b[c + half]);
                break;
            case AIO_NN_SNAKE: {
                const float *alpha = j->act_param;
                for (int64_t c = 0; c < ch; c++) o[c] = snake(xr[c] * a[c] + b[c], alpha[c]);
                break;
            }
            case AIO_NN_LEAKY: {
                float slope = j->act_param[0];
                for (int64_t c = 0; c < ch; c++) o[c] = leaky(xr[c] * a[c] + b[c], slope);
                break;
            }
            case AIO_NN_ELU:
                for (int64_t c = 0; c < ch; c++) o[c] = elu(xr[c] * a[c] + b[c]);
                break;
            default:
                for (int64_t c = 0; c < ch; c++) o[c] = xr[c] * a[c] + b[c];
            }
            if (res) {
                const float *ls = j->res_scale;
                if (ls)
                    for (int64_t c = 0; c < c_out; c++) o[c] = res[c] + ls[c] * o[c];
                else
                    for (int64_t c = 0; c < c_out; c++) o[c] = res[c] + o[c];
            }
        }
    }
}

static void *run_stats(void *p) {
    nn_job *j = p;
    if (j->facc)
        stats_dense(j);
    else
        stats_rows(j);
    return NULL;
}

static void *run_apply(void *p) {
    apply_rows(p);
    return NULL;
}

/* Runs fn over the n jobs (each `size` bytes) at jobs, jobs[0] on the calling thread; a job
   whose thread cannot be started runs on the calling thread too. */
static void parallel(void *(*fn)(void *), void *jobs, size_t size, int n) {
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    char *at = jobs;
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, fn, at + (size_t)i * size) == 0;
    fn(at);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            fn(at + (size_t)i * size);
    }
}

/* Threads for `rows` rows of `per_row` elements: at most `threads`, MAX_THREADS and rows, and
   at least MIN_PER_THREAD elements each. */
static int thread_count(int threads, int64_t rows, int64_t per_row) {
    int64_t n = threads < 1 ? 1 : threads;
    int64_t by_size = rows * per_row / MIN_PER_THREAD + 1;
    if (n > by_size) n = by_size;
    if (n > rows) n = rows;
    if (n > MAX_THREADS) n = MAX_THREADS;
    return n < 1 ? 1 : (int)n;
}

static void split_rows(nn_job *jobs, int n, const nn_job *base) {
    for (int i = 0; i < n; i++) {
        jobs[i] = *base;
        jobs[i].tmp = base->tmp ? base->tmp + i * base->thread_stride : NULL;
        jobs[i].r0 = base->rows * i / n;
        jobs[i].r1 = base->rows * (i + 1) / n;
    }
}

AIO_API int aio_nn_norm_act(const float *x, const int64_t *strides, const float *proj,
                            int64_t k_in, const float *x_bias, float *out, int64_t outer,
                            int64_t rows, int64_t mid, int64_t channels, int64_t groups,
                            int normalize, float eps,
                            const float *weight, const float *bias, int act,
                            const float *act_param, const float *residual,
                            const float *res_scale, int threads, char *err) {
    if (!x || !out || outer < 0 || rows < 0 || mid < 0 || channels <= 0 || groups <= 0 ||
        channels % groups)
        return aio_fail(err, AIO_EARG, "bad shape (channels %lld, groups %lld)",
                        (long long)channels, (long long)groups);
    if (act < AIO_NN_NONE || act > AIO_NN_ELU)
        return aio_fail(err, AIO_EARG, "unknown activation %d", act);
    if ((act == AIO_NN_SNAKE || act == AIO_NN_LEAKY) && !act_param)
        return aio_fail(err, AIO_EARG, "activation %d needs its parameter", act);
    if (act == AIO_NN_GLU && channels % 2)
        return aio_fail(err, AIO_EARG, "GLU over an odd channel count (%lld)", (long long)channels);
    if (proj && k_in <= 0) return aio_fail(err, AIO_EARG, "projection from %lld channels",
                                           (long long)k_in);
    if (outer == 0 || rows == 0 || mid == 0) return 0;
    int64_t x_ch = proj ? k_in : channels; /* channels of what x points to */
    const int64_t packed[3] = {rows * mid * x_ch, mid * x_ch, x_ch};
    if (!strides) strides = packed;
    /* a single mid step has no stride of its own (MLX's layout gives 0): call it packed, so
       that the row-as-one-vector paths below apply (instance norms: 4x faster statistics) */
    const int64_t one_mid[3] = {strides[0], strides[1], x_ch};
    if (mid == 1) strides = one_mid;
    int64_t c_out = act == AIO_NN_GLU ? channels / 2 : channels;
    int64_t slots = mid * groups, cg = channels / groups;
    int n = thread_count(threads, rows, mid * channels);

    /* a, b: per (mid, channel) when normalising, else per channel; then shift and shift_e;
       then each thread's own buffers (its projected row, its float accumulators), and in
       sums each thread's slot sums and double accumulators. Every thread's part starts on
       its own 128-byte line: with a 6-channel DConv norm, two threads summing into one
       line took 10x longer on two cores than on one. */
    int64_t affine = normalize ? mid * channels : channels;
    int64_t width = mid * channels;
    int dense = normalize && !proj && strides[2] == channels && cg < 32 && width <= (1 << 17);
    size_t shared_f = PAD_F(2 * (size_t)affine + (size_t)slots + (dense ? (size_t)width : 0));
    size_t thread_f = PAD_F((proj ? (size_t)channels : 0) + (dense ? 2 * (size_t)width : 0));
    size_t sum_d = PAD_D(2 * (size_t)slots);
    size_t thread_d = sum_d + (dense ? PAD_D(2 * (size_t)width) : 0);
    float *a = aligned_alloc(128, sizeof(float) * (shared_f + thread_f * (size_t)n));
    double *sums = aligned_alloc(128, sizeof(double) * thread_d * (size_t)n);
    if (!a || !sums) {
        free(a);
        free(sums);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    float *b = a + affine, *shift = b + affine;
    if (!normalize) {
        for (int64_t c = 0; c < channels; c++) { /* (x + x_bias) * weight + bias */
            a[c] = weight ? weight[c] : 1.f;
            b[c] = (bias ? bias[c] : 0.f) + (x_bias ? x_bias[c] * a[c] : 0.f);
        }
    }
    nn_job jobs[MAX_THREADS];
    for (int64_t o = 0; o < outer; o++) {
        nn_job base = {.x = x + o * strides[0], .x_bias = x_bias, .row_stride = strides[1],
                       .mid_stride = strides[2], .out = out + o * rows * mid * c_out,
                       .residual = residual ? residual + o * rows * mid * c_out : NULL,
                       .res_scale = res_scale, .rows = rows, .mid = mid, .channels = channels,
                       .groups = groups, .act = act, .act_param = act_param, .shift = shift,
                       .a = a, .b = b,
                       .mid_affine = normalize, .proj = proj, .k_in = k_in,
                       .tmp = proj ? a + shared_f : NULL, .thread_stride = (int64_t)thread_f};
        if (normalize) {
            /* sums of (x - shift), shift = the slot's mean over the first row: keeps the
               one-pass variance exact enough when the mean is large against the spread */
            for (int64_t s = 0; s < slots; s++) {
                const float *row = fetch_row(&base, base.x, 0, s / groups);
                double acc = 0;
                for (int64_t c = 0; c < cg; c++)
                    acc += row[(s % groups) * cg + c] +
                           (x_bias ? x_bias[(s % groups) * cg + c] : 0.f);
                shift[s] = (float)(acc / (double)cg);
            }
            float *shift_e = dense ? shift + slots : NULL;
            if (dense) /* x_bias folds into the shift: (x + xb) - k = x - (k - xb) */
                for (int64_t i = 0; i < width; i++)
                    shift_e[i] = shift[(i / channels) * groups + (i % channels) / cg] -
                                 (x_bias ? x_bias[i % channels] : 0.f);
            split_rows(jobs, n, &base);
            for (int i = 0; i < n; i++) {
                jobs[i].sum = sums + (size_t)i * thread_d;
                jobs[i].sq = jobs[i].sum + slots;
                memset(jobs[i].sum, 0, sizeof(double) * 2 * (size_t)slots);
                if (dense) {
                    jobs[i].shift_e = shift_e;
                    jobs[i].facc = a + shared_f + (size_t)i * thread_f;
                    jobs[i].dacc = jobs[i].sum + sum_d;
                }
            }
            parallel(run_stats, jobs, sizeof jobs[0], n);
            double count = (double)rows * (double)cg;
            for (int64_t s = 0; s < slots; s++) {
                double sum = 0, sq = 0;
                for (int i = 0; i < n; i++) {
                    sum += jobs[i].sum[s];
                    sq += jobs[i].sq[s];
                }
                double mean = sum / count, var = sq / count - mean * mean;
                if (var < 0) var = 0;
                double rstd = 1.0 / sqrt(var + (double)eps);
                mean += shift[s];
                int64_t m = s / groups, g = s % groups;
                for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
                    double w = weight ? weight[c] : 1.0, bb = bias ? bias[c] : 0.0;
                    double xb = x_bias ? x_bias[c] : 0.0;
                    a[m * channels + c] = (float)(rstd * w);
                    b[m * channels + c] = (float)(bb + (xb - mean) * rstd * w);
                }
            }
        }
        split_rows(jobs, n, &base);
        parallel(run_apply, jobs, sizeof jobs[0], n);
    }
    free(a);
    free(sums);
    return 0;
}

typedef struct {
    float *x, scale;
    int64_t cols, r0, r1;
} softmax_job;

AIO_CLONES
static void softmax_rows(softmax_job *j) {
    for (int64_t r = j->r0; r < j->r1; r++) {
        float *row = j->x + r * j->cols;
        /* 16 independent lanes, so that GCC vectorises the max and the sum */
        float lanes[16], top = row[0];
        int64_t c = 0, whole = j->cols / 16 * 16;
        for (int i = 0; i < 16; i++) lanes[i] = top;
        for (; c < whole; c += 16)
            for (int i = 0; i < 16; i++) lanes[i] = row[c + i] > lanes[i] ? row[c + i] : lanes[i];
        for (int i = 0; i < 16; i++) top = lanes[i] > top ? lanes[i] : top;
        for (; c < j->cols; c++) top = row[c] > top ? row[c] : top;
        for (int i = 0; i < 16; i++) lanes[i] = 0.f;
        for (c = 0; c < whole; c += 16)
            for (int i = 0; i < 16; i++) {
                float e = exp_approx((row[c + i] - top) * j->scale);
                row[c + i] = e;
                lanes[i] += e;
            }
        float total = 0.f;
        for (; c < j->cols; c++) {
            row[c] = exp_approx((row[c] - top) * j->scale);
            total += row[c];
        }
        for (int i = 0; i < 16; i++) total += lanes[i];
        float inv = 1.f / total;
        for (int64_t c = 0; c < j->cols; c++) row[c] *= inv;
    }
}

static void *run_softmax(void *p) {
    softmax_rows(p);
    return NULL;
}

AIO_API int aio_nn_softmax(float *x, int64_t rows, int64_t cols, float scale, int threads,
                           char *err) {
    if (!x || rows < 0 || cols <= 0)
        return aio_fail(err, AIO_EARG, "bad shape (%lld rows of %lld)", (long long)rows,
                        (long long)cols);
    if (!(scale > 0)) return aio_fail(err, AIO_EARG, "scale must be positive, got %g", scale);
    if (rows == 0) return 0;
    int n = thread_count(threads, rows, cols);
    softmax_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++)
        jobs[i] = (softmax_job){.x = x, .scale = scale, .cols = cols, .r0 = rows * i / n,
                                .r1 = rows * (i + 1) / n};
    parallel(run_softmax, jobs, sizeof jobs[0], n);
    return 0;
}

typedef struct {
    const float *z, *bias;
    float *out;
    int64_t length, taps, stride, channels, start, out_len, r0, r1;
    int act;
} ola_job;

AIO_CLONES
static void ola_rows(ola_job *j) {
    int64_t ch = j->channels, block = j->taps * j->stride * ch; /* one input frame's z */
    for (int64_t row = j->r0; row < j->r1; row++) {
        int64_t b = row / j->out_len, p = row % j->out_len;
        int64_t q = p + j->start, u = q / j->stride, s = q % j->stride;
        const float *zb = j->z + b * j->length * block;
        float *o = j->out + row * ch;
        for (int64_t c = 0; c < ch; c++) o[c] = j->bias ? j->bias[c] : 0.f;
        for (int64_t t = 0; t < j->taps; t++) { /* frame u - t, its tap t */
            int64_t frame = u - t;
            if (frame < 0 || frame >= j->length) continue;
            const float *zr = zb + frame * block + (t * j->stride + s) * ch;
            for (int64_t c = 0; c < ch; c++) o[c] += zr[c];
        }
        if (j->act == AIO_NN_GELU)
            for (int64_t c = 0; c < ch; c++) o[c] = gelu_erf(o[c]);
        else if (j->act == AIO_NN_GELU_TANH)
            for (int64_t c = 0; c < ch; c++) o[c] = gelu_tanh(o[c]);
    }
}

static void *run_ola(void *p) {
    ola_rows(p);
    return NULL;
}

AIO_API int aio_nn_overlap_add(const float *z, float *out, int64_t batch, int64_t length,
                               int64_t taps, int64_t stride, int64_t channels, int64_t start,
                               int64_t out_len, const float *bias, int act, int threads,
                               char *err) {
    if (!z || !out || batch < 0 || length < 0 || taps <= 0 || stride <= 0 || channels <= 0 ||
        start < 0 || out_len < 0)
        return aio_fail(err, AIO_EARG, "bad shape");
    if (act != AIO_NN_NONE && act != AIO_NN_GELU && act != AIO_NN_GELU_TANH)
        return aio_fail(err, AIO_EARG, "activation %d is not element-wise", act);
    int64_t rows = batch * out_len;
    if (rows == 0) return 0;
    int n = thread_count(threads, rows, channels * taps);
    ola_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++)
        jobs[i] = (ola_job){.z = z, .bias = bias, .out = out, .length = length, .taps = taps,
                            .stride = stride, .channels = channels, .start = start,
                            .out_len = out_len, .r0 = rows * i / n, .r1 = rows * (i + 1) / n,
                            .act = act};
    parallel(run_ola, jobs, sizeof jobs[0], n);
    return 0;
}

/* ---- Depthwise convolution (groups = channels), channels-last ----

   Each output row is the bias plus, per tap, the weight row times one input row: a
   multiply-add across the channels, vectorised; the activation is applied while the row is
   in cache. */

typedef struct {
    const float *x, *w, *bias, *act_param;
    float *out;
    int64_t length, channels, taps, pad, dil, out_len, r0, r1;
    int act;
} dw_job;

AIO_CLONES
static void dw_rows(dw_job *j) {
    int64_t ch = j->channels;
    for (int64_t row = j->r0; row < j->r1; row++) {
        int64_t b = row / j->out_len, t = row % j->out_len;
        float *o = j->out + row * ch;
        for (int64_t c = 0; c < ch; c++) o[c] = j->bias ? j->bias[c] : 0.f;
        for (int64_t k = 0; k < j->taps; k++) {
            int64_t s = t - j->pad + k * j->dil;
            if (s < 0 || s >= j->length) continue; /* zero padding */
            const float *xr = j->x + (b * j->length + s) * ch, *wk = j->w + k * ch;
            for (int64_t c = 0; c < ch; c++) o[c] += wk[c] * xr[c];
        }
        if (j->act == AIO_NN_SNAKE) {
            const float *alpha = j->act_param;
            for (int64_t c = 0; c < ch; c++) o[c] = snake(o[c], alpha[c]);
        } else if (j->act == AIO_NN_LEAKY) {
            float slope = j->act_param[0];
            for (int64_t c = 0; c < ch; c++) o[c] = leaky(o[c], slope);
        } else if (j->act == AIO_NN_GELU) {
            for (int64_t c = 0; c < ch; c++) o[c] = gelu_erf(o[c]);
        } else if (j->act == AIO_NN_GELU_TANH) {
            for (int64_t c = 0; c < ch; c++) o[c] = gelu_tanh(o[c]);
        } else if (j->act == AIO_NN_ELU) {
            for (int64_t c = 0; c < ch; c++) o[c] = elu(o[c]);
        }
    }
}

static void *run_dw(void *p) {
    dw_rows(p);
    return NULL;
}

AIO_API int aio_nn_depthwise_conv1d(const float *x, int64_t batch, int64_t length,
                                    int64_t channels, const float *weight, int64_t taps,
                                    int64_t padding, int64_t dilation, const float *bias,
                                    int act, const float *act_param, float *out,
                                    int64_t out_len, int threads, char *err) {
    if (!x || !weight || !out || batch < 0 || length < 0 || channels <= 0 || taps <= 0 ||
        padding < 0 || dilation <= 0 || out_len < 0 ||
        out_len != length + 2 * padding - dilation * (taps - 1))
        return aio_fail(err, AIO_EARG, "bad shape");
    if (act == AIO_NN_GLU) return aio_fail(err, AIO_EARG, "GLU changes the channel count");
    if ((act == AIO_NN_SNAKE || act == AIO_NN_LEAKY) && !act_param)
        return aio_fail(err, AIO_EARG, "the activation needs its parameter");
    int64_t rows = batch * out_len;
    if (rows == 0) return 0;
    int n = thread_count(threads, rows, channels * taps);
    dw_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++)
        jobs[i] = (dw_job){.x = x, .w = weight, .bias = bias, .act_param = act_param, .out = out,
                           .length = length, .channels = channels, .taps = taps, .pad = padding,
                           .dil = dilation, .out_len = out_len, .r0 = rows * i / n,
                           .r1 = rows * (i + 1) / n, .act = act};
    parallel(run_dw, jobs, sizeof jobs[0], n);
    return 0;
}

/* ---- Convolution as blocked im2col + the caller's sgemm ----

   A block of output positions at a time: their receptive fields are gathered into a row-major
   [block][kh * kw * c_in] buffer that stays in L2, and one sgemm with the weight (MLX layout
   [c_out][kh][kw][c_in], used transposed) writes the block's outputs. Each thread takes its
   own blocks with the BLAS set to one thread; the whole input is read about once and the
   output written once, where accumulating a matmul per tap re-reads and re-writes the output
   kh * kw times (memory-bound for small c_in). Convolutions along one axis with c_in >= 128
   take the shifted-matmul path below instead. */

typedef void (*nn_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k,
                            float alpha, const float *a, int lda, const float *b, int ldb,
                            float beta, float *c, int ldc);
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

/* parallel() for jobs that call sgemm: with several threads the BLAS is set to one thread
   meanwhile (each job's sgemm on its own core), then restored. n > 1 needs both setters. */
static void parallel_blas(void *(*fn)(void *), void *jobs, size_t size, int n,
                          void *set_threads, void *get_threads) {
    if (n < 2) {
        parallel(fn, jobs, size, n);
        return;
    }
    int saved = ((int (*)(void))get_threads)();
    ((void (*)(int))set_threads)(1);
    parallel(fn, jobs, size, n);
    ((void (*)(int))set_threads)(saved);
}

typedef struct {
    nn_sgemm_fn gemm;
    const float *x, *add, *w, *bias;
    float *out, *cols, *tmp;
    int64_t h, wd, c_in, kh, kw, ph, pw, dh, dw, h_out, w_out, c_out, block, r0, r1;
    int act;
} conv_job;

/* bias, then the activation, from the sgemm's rows t [m][c_out] to out (GLU halves them) */
AIO_CLONES
static void conv_epilogue(const float *t, float *o, int64_t m, int64_t ch, const float *bias,
                          int act) {
    int64_t half = ch / 2;
    for (int64_t i = 0; i < m; i++) {
        const float *tr = t + i * ch;
        if (act == AIO_NN_GLU) {
            float *orow = o + i * half;
            if (bias)
                for (int64_t c = 0; c < half; c++)
                    orow[c] = (tr[c] + bias[c]) * sigmoid(tr[c + half] + bias[c + half]);
            else
                for (int64_t c = 0; c < half; c++) orow[c] = tr[c] * sigmoid(tr[c + half]);
            continue;
        }
        float *orow = o + i * ch;
        if (act == AIO_NN_ELU) {
            for (int64_t c = 0; c < ch; c++) orow[c] = elu(tr[c] + (bias ? bias[c] : 0.f));
            continue;
        }
        for (int64_t c = 0; c < ch; c++) {
            float v = tr[c] + (bias ? bias[c] : 0.f);
            orow[c] = act == AIO_NN_GELU ? gelu_erf(v) : act == AIO_NN_GELU_TANH ? gelu_tanh(v) : v;
        }
    }
}

AIO_CLONES
static void gather_add(float *dst, const float *a, const float *b, int64_t n) {
    for (int64_t c = 0; c < n; c++) dst[c] = a[c] + b[c];
}

static void conv_rows(conv_job *j) {
    int64_t k = j->kh * j->kw * j->c_in, plane = j->h_out * j->w_out;
    int64_t c_final = j->act == AIO_NN_GLU ? j->c_out / 2 : j->c_out;
    int direct = j->kh == 1 && j->kw == 1 && j->ph == 0 && j->pw == 0 && !j->add;
    size_t run = (size_t)j->c_in * sizeof(float);
    for (int64_t r = j->r0; r < j->r1; r += j->block) {
        int64_t m = j->r1 - r < j->block ? j->r1 - r : j->block;
        const float *a = j->x + r * j->c_in; /* 1x1: the input rows are the matrix */
        if (!direct) {
            for (int64_t i = 0; i < m; i++) {
                int64_t row = r + i, n = row / plane, p = row % plane;
                int64_t oy = p / j->w_out, ox = p % j->w_out;
                int64_t base = n * j->h * j->wd * j->c_in;
                float *dst = j->cols + i * k;
                for (int64_t u = 0; u < j->kh; u++) {
                    int64_t y = oy + u * j->dh - j->ph;
                    for (int64_t v = 0; v < j->kw; v++, dst += j->c_in) {
                        int64_t xx = ox + v * j->dw - j->pw;
                        if (y < 0 || y >= j->h || xx < 0 || xx >= j->wd) {
                            memset(dst, 0, run);
                            continue;
                        }
                        int64_t at = base + (y * j->wd + xx) * j->c_in;
                        if (j->add)
                            gather_add(dst, j->x + at, j->add + at, j->c_in);
                        else
                            memcpy(dst, j->x + at, run);
                    }
                }
            }
            a = j->cols;
        }
        int fused = j->bias || j->act != AIO_NN_NONE;
        float *o = fused ? j->tmp : j->out + r * j->c_out;
        j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)m, (int)j->c_out, (int)k, 1.f,
                a, (int)k, j->w, (int)k, 0.f, o, (int)j->c_out);
        if (fused) conv_epilogue(o, j->out + r * c_final, m, j->c_out, j->bias, j->act);
    }
}

static void *run_conv(void *p) {
    conv_rows(p);
    return NULL;
}

/* ---- Convolution along one axis as shifted matmuls ----

   With kw == 1 (no padding, no dilation across w), output row p of a batch item reads, for
   tap u, input row p + (u * dh - ph) * w of the same item: for a block of consecutive outputs
   each tap's inputs are one contiguous run of rows, so the block is kh sgemm calls straight
   from the input (K = c_in each, accumulating) and nothing is gathered. With c_in >= 128
   that beats the gathered form (measured here, Kokoro's generator shapes: 128 channels x
   32160 frames k 11 52 -> 47 ms, 256 x 5360 k 3 9.2 -> 7.8 ms; torch 45 and 7.4): the
   weight taps are packed per call but are small, and the input is read where it lies. */

static void conv_taps_block(const conv_job *j, int64_t r, int64_t m, float *o) {
    int64_t plane = j->h_out * j->w_out, n = r / plane, p0 = r % plane, p1 = p0 + m;
    int64_t in_rows = j->h * j->wd;
    memset(o, 0, sizeof(float) * (size_t)(m * j->c_out));
    for (int64_t u = 0; u < j->kh; u++) {
        int64_t shift = (u * j->dh - j->ph) * j->wd; /* input row = output row + shift */
        int64_t lo = p0 > -shift ? p0 : -shift;
        int64_t hi = p1 < in_rows - shift ? p1 : in_rows - shift;
        if (hi <= lo) continue; /* this tap reads only padding for the block */
        j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)(hi - lo), (int)j->c_out,
                (int)j->c_in, 1.f, j->x + (n * in_rows + lo + shift) * j->c_in, (int)j->c_in,
                j->w + u * j->c_in, (int)(j->kh * j->c_in), 1.f, o + (lo - p0) * j->c_out,
                (int)j->c_out);
    }
}

static void conv_taps_rows(conv_job *j) {
    int64_t plane = j->h_out * j->w_out;
    int64_t c_final = j->act == AIO_NN_GLU ? j->c_out / 2 : j->c_out;
    int fused = j->bias || j->act != AIO_NN_NONE;
    for (int64_t r = j->r0; r < j->r1;) {
        int64_t m = j->r1 - r < j->block ? j->r1 - r : j->block;
        int64_t to_plane_end = plane - r % plane; /* a block stays within one batch item */
        m = m < to_plane_end ? m : to_plane_end;
        float *o = fused ? j->tmp : j->out + r * j->c_out;
        conv_taps_block(j, r, m, o);
        if (fused) conv_epilogue(o, j->out + r * c_final, m, j->c_out, j->bias, j->act);
        r += m;
    }
}

static void *run_conv_taps(void *p) {
    conv_taps_rows(p);
    return NULL;
}

typedef struct {
    const float *t, *bias;
    float *out;
    int64_t ch, r0, r1;
    int act;
} epi_job;

static void *run_epilogue(void *p) {
    epi_job *e = p;
    int64_t c_final = e->act == AIO_NN_GLU ? e->ch / 2 : e->ch;
    conv_epilogue(e->t + e->r0 * e->ch, e->out + e->r0 * c_final, e->r1 - e->r0, e->ch, e->bias,
                  e->act);
    return NULL;
}

/* kh shifted sgemm calls per block (see above); returns 1 when done, < 0 on error. A batch
   item whose output is under 8 MB is one block with the BLAS's own threads (measured best
   there: its threads share the packed weight); larger ones are blocks of ~512 KB of output,
   a thread each, the BLAS single-threaded. */
static int conv_taps(conv_job base, int64_t rows, int threads, void *set_threads,
                     void *get_threads, char *err) {
    int64_t plane = base.h_out * base.w_out;
    int whole = plane * base.c_out * (int64_t)sizeof(float) <= (8 << 20);
    int n = 1;
    if (whole) {
        base.block = plane;
    } else {
        base.block = (512 << 10) / (base.c_out * (int64_t)sizeof(float));
        base.block = base.block < 256 ? 256 : base.block > 2048 ? 2048 : base.block;
        n = thread_count(set_threads && get_threads ? threads : 1, rows,
                         base.kh * base.c_in * base.c_out / 64);
    }
    int fused = base.bias || base.act != AIO_NN_NONE;
    conv_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        jobs[i] = base;
        jobs[i].r0 = rows * i / n;
        jobs[i].r1 = rows * (i + 1) / n;
        jobs[i].tmp = fused ? malloc(sizeof(float) * (size_t)(base.block * base.c_out)) : NULL;
        if (fused && !jobs[i].tmp) {
            for (int f = 0; f < i; f++) free(jobs[f].tmp);
            return aio_fail(err, AIO_ENOMEM, "out of memory (%lld-float convolution block)",
                            (long long)(base.block * base.c_out));
        }
    }
    if (whole && fused) { /* the sgemm with the BLAS's threads, then the epilogue with ours */
        float *t = jobs[0].tmp;
        int64_t c_final = base.act == AIO_NN_GLU ? base.c_out / 2 : base.c_out;
        for (int64_t r = 0; r < rows; r += plane) {
            conv_taps_block(&jobs[0], r, plane, t);
            int ne = thread_count(threads, plane, base.c_out);
            epi_job ej[MAX_THREADS];
            for (int i = 0; i < ne; i++)
                ej[i] = (epi_job){.t = t, .bias = base.bias, .out = base.out + r * c_final,
                                  .ch = base.c_out, .r0 = plane * i / ne,
                                  .r1 = plane * (i + 1) / ne, .act = base.act};
            parallel(run_epilogue, ej, sizeof ej[0], ne);
        }
    } else if (whole) {
        conv_taps_rows(&jobs[0]);
    } else {
        parallel_blas(run_conv_taps, jobs, sizeof jobs[0], n, set_threads, get_threads);
    }
    for (int i = 0; i < n; i++) free(jobs[i].tmp);
    return 1;
}

AIO_API int aio_nn_conv2d(void *sgemm, void *set_threads, void *get_threads, const float *x,
                          const float *add, int64_t batch, int64_t h, int64_t w, int64_t c_in,
                          const float *weight, int64_t c_out, int64_t kh, int64_t kw, int64_t ph,
                          int64_t pw, int64_t dh, int64_t dw, const float *bias, int act,
                          float *out, int threads, char *err) {
    if (!sgemm || !x || !weight || !out || batch < 0 || h < 0 || w < 0 || c_in <= 0 ||
        c_out <= 0 || kh <= 0 || kw <= 0 || ph < 0 || pw < 0 || dh <= 0 || dw <= 0)
        return aio_fail(err, AIO_EARG, "bad convolution arguments");
    if (act < AIO_NN_NONE || (act > AIO_NN_GLU && act != AIO_NN_ELU) ||
        (act == AIO_NN_GLU && c_out % 2))
        return aio_fail(err, AIO_EARG, "bad activation %d for %lld channels", act,
                        (long long)c_out);
    int64_t k = kh * kw * c_in;
    int64_t h_out = h + 2 * ph - dh * (kh - 1), w_out = w + 2 * pw - dw * (kw - 1);
    if (k > INT32_MAX / 4 || c_out > INT32_MAX / 4)
        return aio_fail(err, AIO_EARG, "convolution too large for sgemm (%lld x %lld)",
                        (long long)k, (long long)c_out);
    if (h_out <= 0 || w_out <= 0 || batch == 0) return 0;
    int64_t rows = batch * h_out * w_out;
    if (kw == 1 && pw == 0 && !add && c_in >= 128 && kh * c_in <= INT32_MAX / 4) {
        conv_job base = {.gemm = (nn_sgemm_fn)sgemm, .x = x, .w = weight, .bias = bias,
                         .out = out, .h = h, .wd = w, .c_in = c_in, .kh = kh, .kw = 1,
                         .ph = ph, .dh = dh, .dw = dw, .h_out = h_out, .w_out = w_out,
                         .c_out = c_out, .act = act};
        int rc = conv_taps(base, rows, threads, set_threads, get_threads, err);
        if (rc != 0) return rc < 0 ? rc : 0;
    }
    /* ~2 MB of gathered rows per block: large enough that each sgemm call amortises packing
       the weight, small enough to stay in L2/L3 */
    int64_t block = (2 << 20) / (k * (int64_t)sizeof(float));
    block = block < 32 ? 32 : block > 512 ? 512 : block;
    int n = thread_count(set_threads && get_threads ? threads : 1, rows, k * c_out / 64);
    if (n > 1 && rows / n < block) block = (rows + n - 1) / n;
    conv_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        jobs[i] = (conv_job){.gemm = (nn_sgemm_fn)sgemm, .x = x, .add = add, .w = weight,
                             .bias = bias, .out = out, .h = h, .wd = w, .c_in = c_in, .kh = kh,
                             .kw = kw, .ph = ph, .pw = pw, .dh = dh, .dw = dw, .h_out = h_out,
                             .w_out = w_out, .c_out = c_out, .block = block,
                             .r0 = rows * i / n, .r1 = rows * (i + 1) / n, .act = act};
        /* one allocation: the gathered rows, then the sgemm's rows before the epilogue */
        jobs[i].cols = malloc((size_t)(block * (k + c_out)) * sizeof(float));
        jobs[i].tmp = jobs[i].cols ? jobs[i].cols + block * k : NULL;
        if (!jobs[i].cols) {
            for (int f = 0; f < i; f++) free(jobs[f].cols);
            return aio_fail(err, AIO_ENOMEM, "out of memory (%lld-float im2col block)",
                            (long long)(block * k));
        }
    }
    parallel_blas(run_conv, jobs, sizeof jobs[0], n, set_threads, get_threads);
    for (int i = 0; i < n; i++) free(jobs[i].cols);
    return 0;
}

/* ---- Attention in query blocks ----

   softmax(scale q k^T) v per (batch, head), a block of queries at a time: the block's scores
   [block][keys] stay in L2 between the two sgemm calls and the softmax, where one whole
   [queries][keys] score matrix per head (29 MB for 2688 tokens) went to memory and back
   three times. Threads take (head, block) items; the BLAS runs single-threaded in each. */

typedef struct {
    nn_sgemm_fn gemm;
    const float *q, *k, *v;
    float *out, *scores;
    int64_t heads, lq, lk, d, block, blocks, i0, i1;
    int64_t q_start, k_start, window; /* window > 0: the causal sliding-window mask */
    float scale;
} attn_job;

static void attn_items(attn_job *j) {
    for (int64_t item = j->i0; item < j->i1; item++) {
        int64_t bh = item / j->blocks, r = item % j->blocks * j->block;
        int64_t m = j->lq - r < j->block ? j->lq - r : j->block;
        int64_t b = bh / j->heads, h = bh % j->heads;
        const float *q = j->q + (bh * j->lq + r) * j->d;
        const float *k = j->k + bh * j->lk * j->d, *v = j->v + bh * j->lk * j->d;
        /* out is [batch][queries][heads][d]: rows of this head are heads * d apart */
        float *o = j->out + ((b * j->lq + r) * j->heads + h) * j->d;
        j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)m, (int)j->lk, (int)j->d, 1.f,
                q, (int)j->d, k, (int)j->d, 0.f, j->scores, (int)j->lk);
        if (j->window <= 0) {
            softmax_job sm = {.x = j->scores, .scale = j->scale, .cols = j->lk, .r0 = 0, .r1 = m};
            softmax_rows(&sm);
        } else { /* each row's visible keys j: q - window < k_start + j <= q, the rest 0 */
            for (int64_t i = 0; i < m; i++) {
                int64_t pos = j->q_start + r + i, lo = pos - j->window + 1 - j->k_start;
                int64_t hi = pos - j->k_start + 1; /* exclusive */
                lo = lo < 0 ? 0 : lo;
                hi = hi > j->lk ? j->lk : hi;
                float *row = j->scores + i * j->lk;
                if (hi <= lo) { /* no key visible: a zero output row */
                    memset(row, 0, sizeof(float) * (size_t)j->lk);
                    continue;
                }
                softmax_job sm = {.x = row + lo, .scale = j->scale, .cols = hi - lo, .r0 = 0,
                                  .r1 = 1};
                softmax_rows(&sm);
                memset(row, 0, sizeof(float) * (size_t)lo);
                memset(row + hi, 0, sizeof(float) * (size_t)(j->lk - hi));
            }
        }
        j->gemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, (int)m, (int)j->d, (int)j->lk,
                1.f, j->scores, (int)j->lk, v, (int)j->d, 0.f, o, (int)(j->heads * j->d));
    }
}

static void *run_attn(void *p) {
    attn_items(p);
    return NULL;
}

AIO_API int aio_nn_attention_window(void *sgemm, void *set_threads, void *get_threads,
                                    const float *q, const float *k, const float *v, float *out,
                                    int64_t batch, int64_t heads, int64_t lq, int64_t lk,
                                    int64_t d, float scale, int64_t block, int64_t q_start,
                                    int64_t k_start, int64_t window, int threads, char *err) {
    if (!sgemm || !q || !k || !v || !out || batch < 0 || heads <= 0 || lq < 0 || lk <= 0 ||
        d <= 0 || !(scale > 0.f))
        return aio_fail(err, AIO_EARG, "bad attention arguments");
    if (lk > INT32_MAX / 4 || lq > INT32_MAX / 4 || heads * d > INT32_MAX / 4)
        return aio_fail(err, AIO_EARG, "attention too large for sgemm");
    if (batch == 0 || lq == 0) return 0;
    if (block <= 0) { /* ~1.5 MB of scores per block: fewer, larger sgemm calls (each packs
                         k and v anew) beat L2 residency; measured 2688 keys: 48 rows 125 ms,
                         128 rows 109 ms */
        block = (384 << 10) / lk;
        block = block < 16 ? 16 : block > 256 ? 256 : block;
    }
    if (block > lq) block = lq;
    int64_t blocks = (lq + block - 1) / block, items = batch * heads * blocks;
    int n = thread_count(set_threads && get_threads ? threads : 1, items,
                         MIN_PER_THREAD); /* any item is worth a thread */
    attn_job jobs[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        jobs[i] = (attn_job){.gemm = (nn_sgemm_fn)sgemm, .q = q, .k = k, .v = v, .out = out,
                             .heads = heads, .lq = lq, .lk = lk, .d = d, .block = block,
                             .blocks = blocks, .i0 = items * i / n, .i1 = items * (i + 1) / n,
                             .q_start = q_start, .k_start = k_start, .window = window,
                             .scale = scale};
        jobs[i].scores = malloc((size_t)(block * lk) * sizeof(float));
        if (!jobs[i].scores) {
            for (int f = 0; f < i; f++) free(jobs[f].scores);
            return aio_fail(err, AIO_ENOMEM, "out of memory (%lld scores)",
                            (long long)(block * lk));
        }
    }
    parallel_blas(run_attn, jobs, sizeof jobs[0], n, set_threads, get_threads);
    for (int i = 0; i < n; i++) free(jobs[i].scores);
    return 0;
}

AIO_API int aio_nn_attention(void *sgemm, void *set_threads, void *get_threads, const float *q,
                             const float *k, const float *v, float *out, int64_t batch,
                             int64_t heads, int64_t lq, int64_t lk, int64_t d, float scale,
                             int64_t block, int threads, char *err) {
    return aio_nn_attention_window(sgemm, set_threads, get_threads, q, k, v, out, batch, heads,
                                   lq, lk, d, scale, block, 0, 0, 0, threads, err);
}

/* ---- A pool of spinning workers for kernels of well under a millisecond ----

   A decode step calls the quantized matmul ~100 times for 0.05-2 ms each. Starting threads
   per call does not pay there: a new thread on this VM's idle second core starts 0.1-0.2 ms
   late. The pool's workers stay, and after a run spin for POOL_SPIN_NS (so that the next
   layer's call finds them awake; after the first few microseconds yielding the core to any
   other runnable thread) before sleeping. The work is split in chunks taken from a
   shared counter, so a worker that is not scheduled (a busy machine) delays nothing: the
   caller takes its chunks. But a worker descheduled in the middle of a chunk (another process
   on its core) makes the caller wait a time slice: when the caller has waited longer than
   half its own work on three runs in a row, the next POOL_SOLO runs go without the pool
   (measured under load here: 0.25 s per decoded token on the pool, 0.14 alone). One run at a
   time; a caller that finds the pool busy (another thread's kernel) works alone. */

#define POOL_SPIN_NS 2000000
#define POOL_SOLO 256

typedef struct {
    void (*chunk)(void *ctx, int slot, int64_t start); /* the chunk at start, by slot `slot` */
    void *ctx;
    int64_t total, step; /* chunks start at 0, step, 2 step, ... below total */
    atomic_llong next;
    int slots; /* participants: slot 0 the caller, 1 .. slots - 1 workers */
} pool_run;

static struct {
    pthread_mutex_t run;  /* held by the caller owning the pool during one run */
    pthread_mutex_t lock; /* guards sleeping on wake */
    pthread_cond_t wake;
    atomic_uint gen;      /* bumped to start a run */
    atomic_uint open;     /* the run's gen while it takes participants, else 0 */
    atomic_int active;    /* workers inside a run */
    atomic_int sleepers;
    pool_run *cur;
    int workers;
    unsigned born;   /* gen when the latest worker was started */
    int strikes;     /* runs in a row that waited long for a worker */
    atomic_int solo; /* runs left to do without the pool */
} pool = {.run = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void pool_work(pool_run *r, int slot) {
    for (;;) {
        int64_t start = atomic_fetch_add(&r->next, r->step);
        if (start >= r->total) return;
        r->chunk(r->ctx, slot, start);
    }
}

static void *pool_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned seen = pool.born; /* stable: no worker is started during a run */
    for (;;) {
        int64_t until = now_ns() + POOL_SPIN_NS;
        for (int i = 0; atomic_load(&pool.gen) == seen; i++) {
            if (i < 1024)
                cpu_relax();
            else /* then let other processes on this core run: spinning took their share */
                sched_yield();
            if ((i & 1023) == 1023 && now_ns() > until) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while (atomic_load(&pool.gen) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        seen = atomic_load(&pool.gen);
        atomic_fetch_add(&pool.active, 1); /* then the caller waits for this worker ... */
        if (atomic_load(&pool.open) == seen && id < pool.cur->slots) /* ... if it joins */
            pool_work(pool.cur, id);
        atomic_fetch_sub(&pool.active, 1);
    }
    return NULL;
}

/* A forked child has the pool's memory but not its threads. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.run, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.workers = 0;
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.active, 0);
    atomic_store(&pool.open, 0);
    atomic_store(&pool.solo, 0);
    pool.strikes = 0;
}

static void pool_register(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* Runs all of r's chunks, on the caller and up to r->slots - 1 workers. */
static void pool_parallel(pool_run *r) {
    if (r->slots < 2 || atomic_load(&pool.solo) > 0 || pthread_mutex_trylock(&pool.run) != 0) {
        if (r->slots >= 2 && atomic_load(&pool.solo) > 0) atomic_fetch_sub(&pool.solo, 1);
        pool_work(r, 0);
        return;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pool_register);
    pool.born = atomic_load(&pool.gen);
    while (pool.workers < r->slots - 1 && pool.workers < MAX_THREADS - 1) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&tid, &attr, pool_worker, (void *)(intptr_t)(pool.workers + 1));
        pthread_attr_destroy(&attr);
        if (failed) break; /* fewer helpers; the chunks still all get done */
        pool.workers++;
    }
    unsigned gen = atomic_load(&pool.gen) + 1;
    if (gen == 0) gen = 1; /* 0 means closed */
    pool.cur = r;
    atomic_store(&pool.open, gen);
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.gen, gen);
    if (atomic_load(&pool.sleepers) > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    int64_t t0 = now_ns();
    pool_work(r, 0);
    atomic_store(&pool.open, 0);
    int64_t t1 = now_ns();
    for (int i = 1; atomic_load(&pool.active) > 0; i++) { /* workers finishing a chunk */
        cpu_relax();
        if ((i & 1023) == 0) sched_yield();
    }
    int64_t waited = now_ns() - t1;
    pool.strikes = waited > (t1 - t0) / 2 && waited > 20000 ? pool.strikes + 1 : 0;
    if (pool.strikes >= 3) {
        pool.strikes = 0;
        atomic_store(&pool.solo, POOL_SOLO);
    }
    pthread_mutex_unlock(&pool.run);
}

/* ---- Quantized matrix products in MLX's affine layout ----

   MLX's CPU kernel dequantizes element by element (under 1 GB/s of packed weights here, and
   again for every row of x); a decode step only has to stream the packed weights once. A
   row's packed words go 16 at a time: lane l of a step holds word l's i-th element, unpacked
   by one mask in place (x is permuted to that order and scaled by 2^-bits i once per call),
   converted and multiply-added across 16 lanes. Several weight rows go side by side, so
   their multiply-add chains overlap (one row's chain waits on the FMA latency) and each
   step of x is loaded once for all of them. A row's scales are converted to float (from the
   model's float32, float16 or bfloat16) and broadcast to their words' lanes once per step;
   the biases never enter the loop: sum_g bias_g * (sum of x over group g), per row. */

#define QMM_LANES 16
#define QMM_MB 4    /* rows of x per pass over the weight rows (accumulators in registers) */
#define QMM_RB 4    /* weight rows side by side */
#define QMM_TILE 32 /* weight rows per unit of the threads' work */

typedef struct {
    const float *x, *xp, *gx; /* x; x permuted; x's sums per group (padded to 16) */
    const uint32_t *w;
    const void *scales, *biases;
    float *out, *sf, *bf; /* this thread's QMM_RB rows of scales and biases, as float */
    int64_t m, k, n, group_size, r0, r1, row_buf, gx_row;
    int bits, dtype;
} qmm_job;

/* IEEE half to float: the exponent rebiased by a multiply (subnormals come out right too). */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu, bits = em << 13;
    float f;
    if (em >= 0x7c00u) { /* inf, NaN */
        bits |= 0x7f800000u;
        memcpy(&f, &bits, sizeof f);
    } else {
        memcpy(&f, &bits, sizeof f);
        f *= 0x1p112f;
    }
    memcpy(&bits, &f, sizeof f);
    bits |= sign;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float qmm_param(const void *p, int dtype, int64_t i) {
    if (dtype == AIO_QMM_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dtype == AIO_QMM_F16) return half_to_float(h);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* GCC's vector extensions: 16 lanes, one zmm register with AVX-512, two ymm with AVX2 and
   four xmm without (the target clones pick). */
typedef float qmm_vf __attribute__((vector_size(4 * QMM_LANES)));
typedef int32_t qmm_vi __attribute__((vector_size(4 * QMM_LANES)));
typedef uint32_t qmm_vu __attribute__((vector_size(4 * QMM_LANES)));

#define QMM_FMA __attribute__((optimize("fp-contract=fast"))) /* -std=c11 turns it off */

/* A permute of one vector by constant indices: GCC's and clang's builtins differ (the fuzz
   build is clang's). */
#if defined(__clang__)
#define QMM_SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define QMM_SHUFFLE(v, ...) __builtin_shuffle(v, (qmm_vi){__VA_ARGS__})
#endif

/* A row's scales p for the 16 words of step c, with WPG words per group. (Written through a
   pointer: returning a 64-byte vector by value has no fixed ABI.) */
static inline __attribute__((always_inline)) void qmm_lanes(qmm_vf *v, const float *p,
                                                            int64_t c, const int WPG) {
    const float *g = p + c * QMM_LANES / WPG;
    if (WPG >= QMM_LANES) {
        *v = (qmm_vf){0} + g[0];
    } else { /* a permute of the next 16 values (the row buffers have 16 floats to spare) */
        qmm_vf near;
        memcpy(&near, g, sizeof near);
        if (WPG == 8)
            *v = QMM_SHUFFLE(near, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        else /* 4 */
            *v = QMM_SHUFFLE(near, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    }
}

/* out[m0 + mm][r + rr] for mm < MB, rr < RB from rows r .. r + RB - 1's packed words (their
   scales and biases in rows s0 .. of j->sf / j->bf, j->row_buf apart). BITS, WPG, MB and RB
   are constants in every expansion, so the MB x RB accumulators stay in registers. Per lane,
   sum_i x q is scaled once per step. */
static inline __attribute__((always_inline)) QMM_FMA void qmm_block(const qmm_job *j, int64_t r,
                                                                    int64_t m0, int s0,
                                                                    const int MB, const int RB,
                                                                    const int BITS,
                                                                    const int WPG) {
    const int epw = 32 / BITS;
    const uint32_t mask = (1u << BITS) - 1u;
    int64_t words = j->k / epw, chunks = words / QMM_LANES;
    const uint32_t *wr = j->w + r * words;
    qmm_vf acc[QMM_MB][QMM_RB];
    for (int mm = 0; mm < MB; mm++)
        for (int rr = 0; rr < RB; rr++) acc[mm][rr] = (qmm_vf){0};
    for (int64_t c = 0; c < chunks; c++) {
        qmm_vu wv[QMM_RB];
        for (int rr = 0; rr < RB; rr++) {
            memcpy(&wv[rr], wr + rr * words + c * QMM_LANES, sizeof wv[rr]);
            /* the same line of the next RB rows (a prefetch past the end never faults):
               without it the interleaved rows ran 1.3x slower from memory */
            __builtin_prefetch(wr + (RB + rr) * words + c * QMM_LANES);
        }
        qmm_vf dot[QMM_MB][QMM_RB];
        for (int mm = 0; mm < MB; mm++)
            for (int rr = 0; rr < RB; rr++) dot[mm][rr] = (qmm_vf){0};
        for (int i = 0; i < epw; i++) {
            qmm_vf xv[QMM_MB];
            for (int mm = 0; mm < MB; mm++)
                memcpy(&xv[mm], j->xp + (((m0 + mm) * chunks + c) * epw + i) * QMM_LANES,
                       sizeof xv[mm]);
            for (int rr = 0; rr < RB; rr++) {
                /* q 2^(BITS i), exact in float; x was scaled by 2^-(BITS i) to match */
                qmm_vu qi =
                    i == epw - 1 ? wv[rr] >> (BITS * i) : wv[rr] & (mask << (BITS * i));
                qmm_vf q = __builtin_convertvector((qmm_vi)qi, qmm_vf);
                for (int mm = 0; mm < MB; mm++) dot[mm][rr] += xv[mm] * q;
            }
        }
        for (int rr = 0; rr < RB; rr++) {
            qmm_vf s;
            qmm_lanes(&s, j->sf + (s0 + rr) * j->row_buf, c, WPG);
            for (int mm = 0; mm < MB; mm++) acc[mm][rr] += s * dot[mm][rr];
        }
    }
    for (int rr = 0; rr < RB; rr++) {
        const float *sf = j->sf + (s0 + rr) * j->row_buf, *bf = j->bf + (s0 + rr) * j->row_buf;
        for (int mm = 0; mm < MB; mm++) {
            /* the biases against x's group sums (both zero past the last group) */
            const float *gx = j->gx + (m0 + mm) * j->gx_row;
            qmm_vf bacc = {0};
            for (int64_t g = 0; g < j->gx_row; g += QMM_LANES) {
                qmm_vf bv, xs;
                memcpy(&bv, bf + g, sizeof bv);
                memcpy(&xs, gx + g, sizeof xs);
                bacc += bv * xs;
            }
            float sum = 0.f;
            for (int l = 0; l < QMM_LANES; l++) sum += acc[mm][rr][l] + bacc[l];
            const float *xr = j->x + (m0 + mm) * j->k;
            const uint32_t *w1 = wr + rr * words;
            for (int64_t t = chunks * QMM_LANES; t < words; t++) /* fewer than 16 words left */
                for (int i = 0; i < epw; i++)
                    sum += xr[t * epw + i] * sf[t / WPG] *
                           (float)(int32_t)((w1[t] >> (BITS * i)) & mask);
            j->out[(m0 + mm) * j->n + r + rr] = sum;
        }
    }
}

/* Rows r .. r + rb - 1 (rb <= QMM_RB, scales and biases in the buffers' rows 0 ..) against
   MB rows of x from m0: QMM_RB weight rows side by side with one or two rows of x, two with
   more (the accumulators fill the registers). */
static inline __attribute__((always_inline)) QMM_FMA void qmm_rows_mb(const qmm_job *j,
                                                                      int64_t r, int64_t m0,
                                                                      int rb, const int MB,
                                                                      const int BITS,
                                                                      const int WPG) {
    int rr = 0;
    if (MB <= 2)
        for (; rr + QMM_RB <= rb; rr += QMM_RB)
            qmm_block(j, r + rr, m0, rr, MB, QMM_RB, BITS, WPG);
    for (; rr + 2 <= rb; rr += 2) qmm_block(j, r + rr, m0, rr, MB, 2, BITS, WPG);
    for (; rr < rb; rr++) qmm_block(j, r + rr, m0, rr, MB, 1, BITS, WPG);
}

#define QMM_BLOCKS(BITS, WPG)                                                              \
    static QMM_FMA void qmm_row_##BITS##_##WPG(const qmm_job *j, int64_t r, int64_t m0,    \
                                               int rb) {                                  \
        switch (j->m - m0) {                                                               \
        case 1: qmm_rows_mb(j, r, m0, rb, 1, BITS, WPG); break;                            \
        case 2: qmm_rows_mb(j, r, m0, rb, 2, BITS, WPG); break;                            \
        case 3: qmm_rows_mb(j, r, m0, rb, 3, BITS, WPG); break;                            \
        default: qmm_rows_mb(j, r, m0, rb, QMM_MB, BITS, WPG); break;                      \
        }                                                                                  \
    }
AIO_CLONES QMM_BLOCKS(4, 4)
AIO_CLONES QMM_BLOCKS(4, 8)
AIO_CLONES QMM_BLOCKS(4, 16)
AIO_CLONES QMM_BLOCKS(8, 8)
AIO_CLONES QMM_BLOCKS(8, 16)
AIO_CLONES QMM_BLOCKS(8, 32)

/* Weight rows r0 .. r1, QMM_RB at a time: their scales and biases converted to float once,
   then every row of x goes past them (they stay in L1), so a prompt reads the weights from
   memory once too. */
static void qmm_rows(qmm_job *j) {
    int64_t groups = j->k / j->group_size, wpg = j->group_size * j->bits / 32;
    void (*row)(const qmm_job *, int64_t, int64_t, int) =
        j->bits == 4 ? (wpg == 4 ? qmm_row_4_4 : wpg == 8 ? qmm_row_4_8 : qmm_row_4_16)
                     : (wpg == 8 ? qmm_row_8_8 : wpg == 16 ? qmm_row_8_16 : qmm_row_8_32);
    for (int64_t r = j->r0; r < j->r1; r += QMM_RB) {
        int rb = j->r1 - r < QMM_RB ? (int)(j->r1 - r) : QMM_RB;
        for (int rr = 0; rr < rb; rr++) {
            int64_t at = (r + rr) * groups;
            float *sf = j->sf + rr * j->row_buf, *bf = j->bf + rr * j->row_buf;
            if (j->dtype == AIO_QMM_F32) {
                memcpy(sf, (const float *)j->scales + at, sizeof(float) * (size_t)groups);
                memcpy(bf, (const float *)j->biases + at, sizeof(float) * (size_t)groups);
            } else {
                for (int64_t g = 0; g < groups; g++) {
                    sf[g] = qmm_param(j->scales, j->dtype, at + g);
                    bf[g] = qmm_param(j->biases, j->dtype, at + g);
                }
            }
        }
        for (int64_t m0 = 0; m0 < j->m; m0 += QMM_MB) row(j, r, m0, rb);
    }
}

/* pool_run's chunk: rows start .. start + QMM_TILE on slot's copy of the job */
static void qmm_chunk(void *ctx, int slot, int64_t start) {
    qmm_job *j = (qmm_job *)ctx + slot;
    j->r0 = start;
    j->r1 = start + QMM_TILE < j->n ? start + QMM_TILE : j->n;
    qmm_rows(j);
}

AIO_API int aio_nn_quantized_matmul(const float *x, int64_t m, int64_t k, const uint32_t *w,
                                    const void *scales, const void *biases, int dtype,
                                    int64_t n, int64_t group_size, int bits, float *out,
                                    int threads, char *err) {
    if (!x || !w || !scales || !biases || !out || m < 0 || n < 0 || k <= 0)
        return aio_fail(err, AIO_EARG, "bad shape");
    if (bits != 4 && bits != 8) return aio_fail(err, AIO_EARG, "bits must be 4 or 8");
    if ((group_size != 32 && group_size != 64 && group_size != 128) || k % group_size)
        return aio_fail(err, AIO_EARG, "bad group size %lld for %lld inputs",
                        (long long)group_size, (long long)k);
    if (dtype != AIO_QMM_F32 && dtype != AIO_QMM_F16 && dtype != AIO_QMM_BF16)
        return aio_fail(err, AIO_EARG, "bad scale dtype");
    if (m == 0 || n == 0) return 0;
    int epw = 32 / bits;
    int64_t words = k / epw, chunks = words / QMM_LANES;
    int nt = thread_count(threads, n, k / 8);
    int64_t groups = k / group_size;
    /* x permuted to the lanes' order, x's group sums, then per thread QMM_RB rows of scales
       and of biases. qmm_lanes reads up to 16 floats at a time and the bias sums go 16
       groups at a time (zeros past the last); whole cache lines per thread (no sharing). */
    int64_t xp_size = m * chunks * QMM_LANES * epw;
    int64_t gx_row = (groups + QMM_LANES - 1) / QMM_LANES * QMM_LANES;
    int64_t row_buf = (groups + 2 * QMM_LANES - 1) / QMM_LANES * QMM_LANES;
    int64_t head = xp_size + m * gx_row;
    size_t size = sizeof(float) * (size_t)(head + 2 * QMM_RB * nt * row_buf);
    float *buf = aligned_alloc(64, size);
    if (!buf) return aio_fail(err, AIO_ENOMEM, "out of memory");
    memset(buf + xp_size, 0, size - sizeof(float) * (size_t)xp_size);
    /* xp [m][chunk][epw][lanes]: the i-th elements of each lane's word, times 2^-(bits i)
       but for the last (qmm_block masks the i-th bits in place) */
    float *xp = buf, *gx = buf + xp_size;
    for (int64_t mm = 0; mm < m; mm++) {
        const float *xr = x + mm * k;
        for (int64_t c = 0; c < chunks; c++) {
            float *dst = xp + (mm * chunks + c) * epw * QMM_LANES;
            for (int l = 0; l < QMM_LANES; l++) {
                const float *src = xr + (c * QMM_LANES + l) * epw;
                for (int i = 0; i < epw; i++)
                    dst[i * QMM_LANES + l] =
                        src[i] * (i == epw - 1 ? 1.f : ldexpf(1.f, -bits * i));
            }
        }
        for (int64_t g = 0; g < groups; g++) {
            float sum = 0.f;
            for (int64_t t = 0; t < group_size; t++) sum += xr[g * group_size + t];
            gx[mm * gx_row + g] = sum;
        }
    }
    qmm_job jobs[MAX_THREADS];
    float *lanes = buf + head;
    for (int i = 0; i < nt; i++)
        jobs[i] = (qmm_job){.x = x, .xp = xp, .gx = gx, .w = w, .scales = scales,
                            .biases = biases, .out = out,
                            .sf = lanes + 2 * i * QMM_RB * row_buf,
                            .bf = lanes + (2 * i + 1) * QMM_RB * row_buf, .m = m, .k = k,
                            .n = n, .group_size = group_size, .row_buf = row_buf,
                            .gx_row = gx_row, .bits = bits, .dtype = dtype};
    pool_run run = {.chunk = qmm_chunk, .ctx = jobs, .total = n, .step = QMM_TILE, .slots = nt};
    pool_parallel(&run);
    free(buf);
    return 0;
}

/* ---- Float32 products with few rows: y = x W^T + bias, W row-major [n][k] (a Linear) ----

   OpenBLAS sends a [1, k] x [k, n] product through its full sgemm (packing included), far
   from memory bandwidth; a decode step only has to stream each weight row once. Each row of
   W is read 16 floats at a time, up to 4 rows side by side, and multiply-added against up to
   LIN_MB rows of x (from L1); with more rows of x a tile of weight rows (LIN_TILE_BYTES)
   stays in cache while x goes past it LIN_MB rows at a time. Tiles are the pool's chunks. */

#define LIN_MB 4
#define LIN_RB 4 /* weight rows side by side */
#define LIN_TILE_BYTES (256 << 10)

typedef struct {
    const float *x, *w, *bias;
    float *out;
    int64_t m, k, n, tile;
} lin_job;

/* out[m0 + mm][r + rr] for mm < MB, rr < RB: RB weight rows read side by side (more loads in
   flight), each 16-float step of x loaded once for all RB rows. MB and RB are constants in
   every expansion, so the MB x RB accumulators stay in registers. */
static inline __attribute__((always_inline)) QMM_FMA void lin_block(const lin_job *j, int64_t r,
                                                                    int64_t m0, const int MB,
                                                                    const int RB) {
    const int64_t k = j->k;
    const float *wr = j->w + r * k;
    const float *xr = j->x + m0 * k;
    qmm_vf acc[LIN_MB][LIN_RB];
    for (int mm = 0; mm < MB; mm++)
        for (int rr = 0; rr < RB; rr++) acc[mm][rr] = (qmm_vf){0};
    int64_t c = 0;
    for (; c + QMM_LANES <= k; c += QMM_LANES) {
        qmm_vf wv[LIN_RB];
        for (int rr = 0; rr < RB; rr++) memcpy(&wv[rr], wr + rr * k + c, sizeof wv[rr]);
        for (int mm = 0; mm < MB; mm++) {
            qmm_vf xv;
            memcpy(&xv, xr + mm * k + c, sizeof xv);
            for (int rr = 0; rr < RB; rr++) acc[mm][rr] += xv * wv[rr];
        }
    }
    for (int mm = 0; mm < MB; mm++)
        for (int rr = 0; rr < RB; rr++) {
            float sum = 0.f;
            for (int l = 0; l < QMM_LANES; l++) sum += acc[mm][rr][l];
            for (int64_t t = c; t < k; t++) sum += xr[mm * k + t] * wr[rr * k + t]; /* < 16 */
            if (j->bias) sum += j->bias[r + rr];
            j->out[(m0 + mm) * j->n + r + rr] = sum;
        }
}

/* Weight rows r0 .. r1 against all rows of x, LIN_MB rows of x per pass over them. */
AIO_CLONES QMM_FMA static void lin_rows(const lin_job *j, int64_t r0, int64_t r1) {
    for (int64_t m0 = 0; m0 < j->m; m0 += LIN_MB) {
        int64_t r = r0, left = j->m - m0;
        switch (left) {
        case 1:
            for (; r + 4 <= r1; r += 4) lin_block(j, r, m0, 1, 4);
            break;
        case 2:
            for (; r + 4 <= r1; r += 4) lin_block(j, r, m0, 2, 4);
            break;
        case 3:
            for (; r + 2 <= r1; r += 2) lin_block(j, r, m0, 3, 2);
            break;
        default:
            for (; r + 2 <= r1; r += 2) lin_block(j, r, m0, LIN_MB, 2);
            break;
        }
        for (; r < r1; r++) { /* the tile's last rows one at a time */
            switch (left) {
            case 1: lin_block(j, r, m0, 1, 1); break;
            case 2: lin_block(j, r, m0, 2, 1); break;
            case 3: lin_block(j, r, m0, 3, 1); break;
            default: lin_block(j, r, m0, LIN_MB, 1); break;
            }
        }
    }
}

static void lin_chunk(void *ctx, int slot, int64_t start) {
    (void)slot;
    const lin_job *j = ctx;
    lin_rows(j, start, start + j->tile < j->n ? start + j->tile : j->n);
}

AIO_API int aio_nn_linear(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
                          const float *bias, float *out, int threads, char *err) {
    if (!x || !w || !out || m < 0 || n < 0 || k <= 0)
        return aio_fail(err, AIO_EARG, "bad shape (m %lld, k %lld, n %lld)", (long long)m,
                        (long long)k, (long long)n);
    if (m == 0 || n == 0) return 0;
    int64_t tile = LIN_TILE_BYTES / ((int64_t)sizeof(float) * k);
    tile = tile < 4 ? 4 : tile > 64 ? 64 : tile;
    lin_job job = {.x = x, .w = w, .bias = bias, .out = out, .m = m, .k = k, .n = n,
                   .tile = tile};
    pool_run run = {.chunk = lin_chunk, .ctx = &job, .total = n, .step = tile,
                    .slots = thread_count(threads, n, k)};
    pool_parallel(&run);
    return 0;
}

/* ---- Float32 products with few rows against an input-major matrix: y = x W, W [k][n] ----

   A weight stored [in][out] (CSM's audio heads) would go through OpenBLAS's sgemm, which
   packs it first (about 4 GB/s here, and its threads then spin on the cores the pool needs).
   Here W is streamed row by row: MM_RB rows at a time are scaled by x's entries and added
   into an n-wide accumulator per row of x, which stays in cache. Runs of rows are the pool's
   chunks; each chunk sums into its own partial and the partials are added in chunk order,
   so the result does not depend on which thread took which chunk. */

#define MM_RB 4
#define MM_MAX_CHUNKS 64

typedef struct {
    const float *x, *w;
    float *part; /* [chunks][m][n] */
    int64_t m, k, n, tile;
} mm_job;

/* acc[mm][:] = sum over rows r0 .. r1 of x[mm][r] * W[r][:], for every row mm of x */
AIO_CLONES QMM_FMA static void mm_rows(const mm_job *j, int64_t r0, int64_t r1, float *acc) {
    const int64_t n = j->n, k = j->k;
    memset(acc, 0, sizeof(float) * (size_t)(j->m * n));
    for (int64_t mm = 0; mm < j->m; mm++) {
        float *a = acc + mm * n;
        const float *xr = j->x + mm * k;
        int64_t r = r0;
        for (; r + MM_RB <= r1; r += MM_RB) {
            const float *w0 = j->w + r * n;
            const qmm_vf x0 = (qmm_vf){0} + xr[r], x1 = (qmm_vf){0} + xr[r + 1];
            const qmm_vf x2 = (qmm_vf){0} + xr[r + 2], x3 = (qmm_vf){0} + xr[r + 3];
            int64_t c = 0;
            for (; c + QMM_LANES <= n; c += QMM_LANES) {
                qmm_vf av, w[MM_RB];
                memcpy(&av, a + c, sizeof av);
                for (int rr = 0; rr < MM_RB; rr++) memcpy(&w[rr], w0 + rr * n + c, sizeof w[rr]);
                av += x0 * w[0] + x1 * w[1] + x2 * w[2] + x3 * w[3];
                memcpy(a + c, &av, sizeof av);
            }
            for (; c < n; c++) /* < 16 */
                a[c] += xr[r] * w0[c] + xr[r + 1] * w0[n + c] + xr[r + 2] * w0[2 * n + c] +
                        xr[r + 3] * w0[3 * n + c];
        }
        for (; r < r1; r++) {
            const float *wr = j->w + r * n;
            for (int64_t c = 0; c < n; c++) a[c] += xr[r] * wr[c];
        }
    }
}

static void mm_chunk(void *ctx, int slot, int64_t start) {
    (void)slot;
    const mm_job *j = ctx;
    int64_t end = start + j->tile < j->k ? start + j->tile : j->k;
    mm_rows(j, start, end, j->part + (start / j->tile) * j->m * j->n);
}

AIO_API int aio_nn_matmul(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
                          float *out, int threads, char *err) {
    if (!x || !w || !out || m < 0 || n < 0 || k <= 0)
        return aio_fail(err, AIO_EARG, "bad shape (m %lld, k %lld, n %lld)", (long long)m,
                        (long long)k, (long long)n);
    if (m == 0 || n == 0) return 0;
    int64_t tile = LIN_TILE_BYTES / ((int64_t)sizeof(float) * n);
    int64_t least = (k + MM_MAX_CHUNKS - 1) / MM_MAX_CHUNKS;
    if (tile < least) tile = least;
    tile = (tile + MM_RB - 1) / MM_RB * MM_RB;
    int64_t chunks = (k + tile - 1) / tile;
    float *part = out;
    if (chunks > 1) {
        part = malloc(sizeof(float) * (size_t)chunks * (size_t)m * (size_t)n);
        if (!part)
            return aio_fail(err, AIO_ENOMEM, "out of memory (%lld partial sums)",
                            (long long)(chunks * m * n));
    }
    mm_job job = {.x = x, .w = w, .part = part, .m = m, .k = k, .n = n, .tile = tile};
    pool_run run = {.chunk = mm_chunk, .ctx = &job, .total = k, .step = tile,
                    .slots = thread_count(threads, chunks, tile * n)};
    pool_parallel(&run);
    if (chunks > 1) {
        const size_t size = (size_t)(m * n);
        memcpy(out, part, sizeof(float) * size);
        for (int64_t c = 1; c < chunks; c++) {
            const float *p = part + (size_t)c * size;
            for (size_t i = 0; i < size; i++) out[i] += p[i];
        }
        free(part);
    }
    return 0;
}
