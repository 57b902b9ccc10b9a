/* The C API of mlx_audio_io._native, exactly as cffi sees it (cdef text).
   Every function returns 0 (or a count >= 0) on success and a negative AIO_E* code on
   failure, with a message in err[0..AIO_ERRLEN). Nothing here keeps the GIL. */

#define AIO_ERRLEN 512

#define AIO_ENOENT -2
#define AIO_EFORMAT -3
#define AIO_EDECODE -4
#define AIO_EIO -5
#define AIO_EARG -6
#define AIO_ENOMEM -7

typedef struct aio_file aio_file;
typedef struct aio_pipe aio_pipe;
typedef struct aio_resampler aio_resampler;

typedef struct {
    int64_t frames;       /* exact frame count, or -1 while unknown (see aio_count_frames) */
    int sample_rate;
    int channels;
    char subtype[16];     /* pcm16, float32, mp3, flac, aac, ... */
    char container[16];   /* wav, mp3, flac, m4a, aiff, caf, ogg, ... */
} aio_info;

/* --- decoding ------------------------------------------------------------------------- */
int aio_open(const char *path, aio_file **out, aio_info *info, char *err);
/* Memory input: data must stay alive and unchanged until aio_close. name may be NULL or a
   file name whose extension helps format detection. */
int aio_open_memory(const void *data, int64_t size, const char *name, aio_file **out,
                    aio_info *info, char *err);
int aio_count_frames(aio_file *f, int64_t *frames, char *err);
void aio_close(aio_file *f);

/* A read pipeline over an open file: frames [start, start+count) (count < 0: to the end),
   optional mono mix-down (mode 1: mean, 2: sum/sqrt(C)), optional resampling to out_rate
   (0: none). Output frame i, channel c goes to out[i*frame_stride + c*chan_stride]. */
int aio_pipe_new(aio_file *f, int64_t start, int64_t count, int mono_mode, int out_rate,
                 int quality, aio_pipe **out, char *err);
int64_t aio_pipe_total(aio_pipe *p);   /* output frames the pipe will give, -1 if unknown */
int64_t aio_pipe_read(aio_pipe *p, float *out, int64_t frames, int64_t frame_stride,
                      int64_t chan_stride, char *err);
void aio_pipe_free(aio_pipe *p);

/* A file and its read pipeline opened in one call (what load, stream and batch_load read
   through): path, or data/size (name: an extension hint or NULL) for memory input. The window
   is [start, start + count) in frames when start >= 0 (count < 0: to the end), else from
   offset seconds for duration seconds (< 0: to the end), rounded to the nearest frame at the
   file's rate (half to even, as Python's round) and written back to start/count. */
typedef struct {
    double offset, duration;
    int64_t start, count;
    int mono_mode, out_rate, quality;
    aio_file *file;
    aio_pipe *pipe;
    aio_info info;
    int64_t total; /* output frames, -1 if unknown */
    char err[AIO_ERRLEN];
} aio_source;
int aio_source_open(aio_source *s, const char *path, const void *data, int64_t size,
                    const char *name);
void aio_source_close(aio_source *s); /* frees the pipe and the file; safe to repeat */
/* info() on a path in one call (open, count, close): fills s->info, s->total with the exact
   frame count, or s->err; opens no pipe. */
int aio_probe(const char *path, aio_source *s);

/* --- resampling of arrays (libsoxr) ----------------------------------------------------- */
int64_t aio_resample_frames(int64_t in_frames, int in_rate, int out_rate);
int aio_resample(const float *in, int64_t in_frames, int channels, int in_rate, int out_rate,
                 int quality, float *out, int64_t out_frames, char *err);

/* --- encoding -------------------------------------------------------------------------- */
#define AIO_ENC_FLOAT32 0
#define AIO_ENC_PCM16 1
#define AIO_ENC_PCM24 2
#define AIO_ENC_ALAC 3
#define AIO_ENC_PCM8 4
#define AIO_ENC_ULAW 5
#define AIO_ENC_ALAW 6
#define AIO_ENC_VORBIS 7
#define AIO_ENC_OPUS 8

/* Writes frames x channels samples read from data[i*frame_stride + c*chan_stride].
   container: "wav", "w64", "mp3", "flac", "m4a", "aiff", "caf", "ogg", "opus". bitrate in bit/s
   (0: codec default). compression: FLAC level 0-12 (-1: default). */
int aio_save(const char *path, const char *container, const float *data, int64_t frames,
             int channels, int64_t frame_stride, int64_t chan_stride, int sample_rate,
             int encoding, int bitrate, int clip, int compression, char *err);
/* The same into memory: *out (free with aio_free) holds *out_size bytes of the file. */
int aio_save_memory(const char *container, const float *data, int64_t frames, int channels,
                    int64_t frame_stride, int64_t chan_stride, int sample_rate, int encoding,
                    int bitrate, int clip, int compression, unsigned char **out,
                    int64_t *out_size, char *err);
void aio_free(void *p);

/* Incremental encoding with libav (every container but WAV/W64): frames go out as they come,
   and the file is flushed after each write, so what was written stays decodable if the
   process dies before aio_writer_close (which writes the trailer and frees the writer). */
typedef struct aio_writer aio_writer;
int aio_writer_open(const char *path, const char *container, int channels, int sample_rate,
                    int encoding, int bitrate, int compression, aio_writer **out, char *err);
int aio_writer_write(aio_writer *w, const float *data, int64_t frames, int64_t frame_stride,
                     int64_t chan_stride, int clip, char *err);
int aio_writer_close(aio_writer *w, char *err);

const char *aio_version_info(void);

/* --- model layers (mlx_audio_io.nn) ------------------------------------------------------ */
#define AIO_NN_NONE 0
#define AIO_NN_GELU 1      /* exact (erf) GELU */
#define AIO_NN_GELU_TANH 2 /* GELU(approximate="tanh") */
#define AIO_NN_GLU 3       /* first half of the channels times the sigmoid of the second */
#define AIO_NN_SNAKE 4     /* x + sin(alpha x)^2 / alpha, alpha per channel (norm_act only) */
#define AIO_NN_LEAKY 5     /* x > 0 ? x : slope x (norm_act only) */
#define AIO_NN_ELU 6       /* x > 0 ? x : exp(x) - 1 (torch's ELU, alpha 1) */

/* x is [outer][rows][mid][channels], channels-last: element (o, r, m, c) at o * strides[0] +
   r * strides[1] + m * strides[2] + c (strides NULL: contiguous). With proj ([k_in][channels]),
   x holds k_in channels h and the rows are h @ proj, computed on the fly (a 1x1 convolution
   with few inputs fused in; strides then describe h). x_bias[c] (NULL: 0) is added to the rows
   first (a preceding layer's bias). With normalize, a GroupNorm of that: statistics per
   (outer, mid, group of channels / groups channels) over rows and the group's channels, then
   y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]; without, y = x * weight[c] + bias[c]
   (weight, bias may be NULL: 1 and 0). Then out = act(y) (act_param: AIO_NN_SNAKE's alpha
   [channels], AIO_NN_LEAKY's slope [1]; NULL for the others), and with a residual (laid out as
   out) out = residual + res_scale[c] * out (res_scale NULL: 1). out is [outer][rows][mid]
   [channels] (AIO_NN_GLU: channels / 2) and must not overlap x. Runs on up to `threads`
   threads. */
int aio_nn_norm_act(const float *x, const int64_t *strides, const float *proj, int64_t k_in,
                    const float *x_bias, float *out, int64_t outer, int64_t rows, int64_t mid,
                    int64_t channels, int64_t groups, int normalize, float eps,
                    const float *weight, const float *bias, int act, const float *act_param,
                    const float *residual, const float *res_scale, int threads, char *err);
/* Softmax of scale * x over each of `rows` rows of `cols` floats, in place (the row max is
   subtracted first; scale > 0). */
int aio_nn_softmax(float *x, int64_t rows, int64_t cols, float scale, int threads, char *err);
/* The overlap-add of a transposed convolution computed as one matmul: z is [batch][length]
   [taps][stride][channels] (input frame t's contribution to output blocks t .. t + taps - 1).
   out[b][p][c] = act(bias[c] + sum over taps of the z entries landing on output position
   start + p), for p < out_len; positions past the last tap get just act(bias). act:
   AIO_NN_NONE, AIO_NN_GELU or AIO_NN_GELU_TANH. */
int aio_nn_overlap_add(const float *z, float *out, int64_t batch, int64_t length, int64_t taps,
                       int64_t stride, int64_t channels, int64_t start, int64_t out_len,
                       const float *bias, int act, int threads, char *err);
/* A depthwise (groups = channels) 1-D convolution of x [batch][length][channels] with weight
   [taps][channels], zero padding `padding` each side and `dilation`: out [batch][out_len]
   [channels] = act(bias[c] (NULL: 0) + sum over taps of weight[k][c] x[t - padding + k
   dilation][c]), out_len = length + 2 padding - dilation (taps - 1). act: AIO_NN_NONE, GELU,
   GELU_TANH, ELU, SNAKE (act_param: alpha [channels]) or LEAKY (act_param: slope [1]). */
int aio_nn_depthwise_conv1d(const float *x, int64_t batch, int64_t length, int64_t channels,
                            const float *weight, int64_t taps, int64_t padding, int64_t dilation,
                            const float *bias, int act, const float *act_param, float *out,
                            int64_t out_len, int threads, char *err);
/* A stride-1 2-D convolution (groups 1) of x [batch][h][w][c_in] (plus `add`, same layout,
   when not NULL: a skip connection summed on the fly) with zero padding (ph, pw) and dilation
   (dh, dw): out [batch][h_out][w_out][c_out] = act(bias[c] (NULL: 0) + the sum over the
   kernel of weight [c_out][kh][kw][c_in] times the input), h_out = h + 2 ph - dh (kh - 1)
   (w_out alike); act is AIO_NN_NONE, GELU, GELU_TANH, GLU (out has c_out / 2 channels) or
   ELU. sgemm is a cblas_sgemm;
   set_threads / get_threads are the BLAS's openblas_set_num_threads /
   openblas_get_num_threads (NULL: the BLAS is called from this thread only, as it is).
   Gathers blocks of output positions' receptive fields (im2col in L2-sized pieces; a 1x1
   kernel reads x in place) on up to `threads` threads, each calling sgemm on its own. */
int aio_nn_conv2d(void *sgemm, void *set_threads, void *get_threads, const float *x,
                  const float *add, int64_t batch, int64_t h, int64_t w, int64_t c_in,
                  const float *weight, int64_t c_out, int64_t kh, int64_t kw, int64_t ph,
                  int64_t pw, int64_t dh, int64_t dw, const float *bias, int act, float *out,
                  int threads, char *err);
/* Dense attention out = softmax(scale q k^T) v for each (batch, head): q [batch][heads][lq][d],
   k and v [batch][heads][lk][d], all contiguous; out is [batch][lq][heads][d]. Queries go in
   blocks of `block` (0: sized for ~1.5 MB of scores) whose scores stay in cache; sgemm,
   set_threads and get_threads as for aio_nn_conv2d. scale > 0. */
int aio_nn_attention(void *sgemm, void *set_threads, void *get_threads, const float *q,
                     const float *k, const float *v, float *out, int64_t batch, int64_t heads,
                     int64_t lq, int64_t lk, int64_t d, float scale, int64_t block, int threads,
                     char *err);
/* aio_nn_attention with the causal sliding-window mask when window > 0: query i (position
   q_start + i) sees key j (position k_start + j) when q - window < k <= q; a query that sees
   no key gets a zero row. */
int aio_nn_attention_window(void *sgemm, void *set_threads, void *get_threads, const float *q,
                            const float *k, const float *v, float *out, int64_t batch,
                            int64_t heads, int64_t lq, int64_t lk, int64_t d, float scale,
                            int64_t block, int64_t q_start, int64_t k_start, int64_t window,
                            int threads, char *err);
/* y = x dequant(w)^T for MLX's affine quantization: x [m][k], w [n][k bits / 32]
   uint32 with elements packed from the low bits up, scales and biases [n][k / group_size] of
   type dtype (AIO_QMM_*); dequant(w)[r][c] = scale * q + bias per group of group_size
   inputs. out is [m][n]. bits 4 or 8; group_size 32, 64 or 128, dividing k. */
#define AIO_QMM_F32 0
#define AIO_QMM_F16 1
#define AIO_QMM_BF16 2
int aio_nn_quantized_matmul(const float *x, int64_t m, int64_t k, const uint32_t *w,
                            const void *scales, const void *biases, int dtype, int64_t n,
                            int64_t group_size, int bits, float *out, int threads, char *err);
/* out = x w^T (+ bias) for float32 x [m][k], w [n][k] (a Linear's weight), bias [n] or NULL,
   out [m][n]: each weight row streamed once (meant for few rows of x, e.g. a decode step). */
int aio_nn_linear(const float *x, int64_t m, int64_t k, const float *w, int64_t n,
                  const float *bias, float *out, int threads, char *err);
/* out = x w for float32 x [m][k], w [k][n] (input-major, e.g. CSM's audio heads), out
   [m][n]: w streamed once, rows split in chunks summed in a fixed order (deterministic). */
int aio_nn_matmul(const float *x, int64_t m, int64_t k, const float *w, int64_t n, float *out,
                  int threads, char *err);
/* A streaming encoder into memory (the servers' one encoder per response): the muxer writes
   to a non-seekable output, so its header goes out once with the sizes unknown (WAV:
   0xFFFFFFFF) and nothing is rewritten at the end. container: "mp3", "opus" / "ogg", "adts"
   (AAC), "flac", "wav" (AIO_ENC_FLOAT32 or AIO_ENC_PCM16). Bytes muxed so far wait in the
   encoder until aio_encoder_take copies out (and drops) up to cap of them;
   aio_encoder_pending says how many wait. aio_encoder_finish flushes the codec and writes
   the trailer; aio_encoder_free releases the encoder (finished or not). */
int aio_encoder_open(const char *container, int channels, int sample_rate, int encoding,
                     int bitrate, int compression, aio_writer **out, char *err);
int aio_encoder_write(aio_writer *w, const float *data, int64_t frames, int64_t frame_stride,
                      int64_t chan_stride, int clip, char *err);
int aio_encoder_finish(aio_writer *w, char *err);
int64_t aio_encoder_pending(const aio_writer *w);
int64_t aio_encoder_take(aio_writer *w, unsigned char *dst, int64_t cap);
void aio_encoder_free(aio_writer *w);
