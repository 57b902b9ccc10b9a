/* Internal header of the mlx-audio-io native layer. The public (cffi-visible) API is in
   io.cdef.h; this adds the backend interface shared by the decoders. */
#ifndef AIO_H
#define AIO_H

#include <stddef.h>
#include <stdint.h>

#include "io.cdef.h"

#define AIO_API __attribute__((visibility("default")))

/* the widest ratio between a file's rate and a requested one (aio_pipe_new refuses more) */
#define AIO_MAX_RATE_RATIO 1024

/* A decoder: reads interleaved float32 at the file's own rate and channel count. */
typedef struct aio_backend {
    const char *name;
    /* Fills up to `frames` frames; returns frames written, 0 at the end, < 0 on error. */
    int64_t (*read)(aio_file *f, float *out, int64_t frames, char *err);
    /* Puts the read position exactly at `frame` (sample-accurate). */
    int (*seek)(aio_file *f, int64_t frame, char *err);
    /* Exact frame count when the container does not state it; may move the position. */
    int (*count)(aio_file *f, int64_t *frames, char *err);
    void (*close)(aio_file *f);
} aio_backend;

struct aio_file {
    const aio_backend *be;
    void *impl;
    aio_info info;
    int64_t pos; /* frames delivered by read() since the start of the file */
    char *path;  /* the file, or for memory input a name whose extension hints the format */
    const unsigned char *mem; /* memory input (owned by the caller), or NULL */
    int64_t mem_size;
    int64_t size; /* bytes in the file (or in memory) when opened */
};

/* libav opens paths as literal files: "file:" + path, with only the file protocol allowed
   (a name such as "pipe:0" or "tcp://..." is a file name here, never a URL). Returns a
   malloc'd string (NULL: out of memory). */
char *aio_literal_url(const char *path);

/* Positional reads from a file descriptor or from memory. */
typedef struct {
    int fd;
    const unsigned char *mem;
    int64_t size;
} aio_src;

int aio_src_read_at(const aio_src *s, void *dst, size_t n, int64_t off); /* 0, or -1 if short */

/* Sequential writes to a file descriptor or to a growing memory buffer. */
typedef struct {
    int fd;
    unsigned char *buf;
    int64_t len, cap;
} aio_sink;

int aio_sink_write(aio_sink *s, const void *p, size_t n); /* 0, or -1 (errno set) */

/* Formats a message into err (AIO_ERRLEN bytes) and returns code. */
int aio_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void aio_set_str(char *dst, size_t cap, const char *src);

/* Backend constructors: fill f->be, f->impl and f->info, or return an error.
   AIO_EFORMAT from the WAV and MP3 backends means "not mine, try libav". */
/* head: the file's first head_n bytes, already read (the chunks are usually all in them) */
int aio_wav_open(aio_file *f, aio_src src, const unsigned char *head, size_t head_n, char *err);
int aio_is_w64(const unsigned char *head, size_t n);
int aio_mp3_open(aio_file *f, aio_src src, char *err); /* owns src.fd */
int aio_ogg_open(aio_file *f, aio_src src, char *err); /* owns src.fd */
int aio_is_ogg_vorbis(const unsigned char *head, size_t n);
int aio_flac_open(aio_file *f, aio_src src, char *err); /* owns src.fd */
int aio_is_native_flac(const unsigned char *head, size_t n);
int aio_av_open(aio_file *f, char *err);
/* Before a libav call: routes libav's log into a per-thread buffer (once) and clears it. */
void aio_av_begin(void);
#if defined(AIO_HAVE_AUDIOTOOLBOX) /* macOS: aio_at.c */
int aio_at_open(aio_file *f, const unsigned char *head, size_t got, char *err);
int aio_at_container(const unsigned char *head, size_t n, const char **container);
#endif

/* Encoders. path == NULL encodes into *mem / *mem_size (malloc'd) instead of a file. */
typedef struct {
    const float *data;
    int64_t frames, frame_stride, chan_stride;
    int channels, sample_rate, encoding, bitrate, clip, compression;
} aio_audio;

int aio_wav_save(const char *path, const char *container, unsigned char **mem,
                 int64_t *mem_size, const aio_audio *a, char *err);
int aio_av_save(const char *path, const char *container, unsigned char **mem,
                int64_t *mem_size, const aio_audio *a, char *err);
#if defined(AIO_HAVE_AUDIOTOOLBOX)
int aio_at_save(const char *path, const char *container, const aio_audio *a, char *err);
#endif

const char *aio_other_versions(void); /* mpg123, soxr and libFLAC */

/* Streaming resampler (libsoxr), interleaved float32. */
aio_resampler *aio_resampler_new(int in_rate, int out_rate, int channels, int quality, char *err);
/* in == NULL flushes. Consumes all of in (in_frames), writes at most out_cap frames, returns
   frames written or < 0; *consumed receives the input frames taken. */
int64_t aio_resampler_process(aio_resampler *r, const float *in, int64_t in_frames,
                              int64_t *consumed, float *out, int64_t out_cap, char *err);
void aio_resampler_free(aio_resampler *r);

/* One sample of float audio to integer PCM, rounding to nearest and saturating; NaN becomes
   0. Branch-free (lo and hi are exact in float up to 24 bits) so loops vectorise. */
static inline int32_t aio_quantize(float x, float scale, int32_t lo, int32_t hi) {
    float y = x * scale;
    y = y > (float)hi ? (float)hi : y;
    y = y < (float)lo ? (float)lo : y;
    y = x == x ? y : 0.0f;
    return (int32_t)__builtin_lrintf(y);
}

static inline float aio_clip(float x) {
    float y = x > 1.0f ? 1.0f : x; /* branch-free so loops vectorise; NaN becomes 0 */
    y = y < -1.0f ? -1.0f : y;
    return x == x ? y : 0.0f;
}

/* aio_clip over n contiguous floats. The compiler cannot turn aio_clip's NaN-exact compares
   into maxps/minps (they differ on NaN and signed zeros), and the blend it emits instead ran
   at a quarter of memory speed (a 3-minute stereo WAV save: 33 ms of clipping, 9 ms so). */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline void aio_clip_block(const float *src, float *dst, int64_t n) {
    const __m128 lo = _mm_set1_ps(-1.0f), hi = _mm_set1_ps(1.0f);
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) { /* max(NaN, -1) = -1, then the ordered mask makes it 0 */
        __m128 x = _mm_loadu_ps(src + k);
        __m128 y = _mm_min_ps(_mm_max_ps(x, lo), hi);
        _mm_storeu_ps(dst + k, _mm_and_ps(y, _mm_cmpord_ps(x, x)));
    }
    for (; k < n; k++) dst[k] = aio_clip(src[k]);
}

/* Whether any of n contiguous floats is outside [-1, 1] or NaN (what aio_clip would change). */
static inline int aio_needs_clip(const float *src, int64_t n) {
    const __m128 one = _mm_set1_ps(1.0f), sign = _mm_set1_ps(-0.0f);
    __m128 any = _mm_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) /* !(|x| <= 1) holds for NaN too */
        any = _mm_or_ps(any, _mm_cmpnle_ps(_mm_andnot_ps(sign, _mm_loadu_ps(src + k)), one));
    int found = _mm_movemask_ps(any) != 0;
    for (; k < n && !found; k++) found = !(src[k] <= 1.0f && src[k] >= -1.0f);
    return found;
}
#else
static inline void aio_clip_block(const float *src, float *dst, int64_t n) {
    for (int64_t k = 0; k < n; k++) dst[k] = aio_clip(src[k]);
}

static inline int aio_needs_clip(const float *src, int64_t n) {
    int found = 0;
    for (int64_t k = 0; k < n; k++) found |= !(src[k] <= 1.0f && src[k] >= -1.0f);
    return found;
}
#endif

#endif
