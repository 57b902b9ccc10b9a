/* MP3 round trip for data augmentation: LAME encodes, libmpg123 decodes, optionally on two
   threads joined by a bounded byte pipe, and the output is cut to align with the input.

   The decoded stream is [Info frame][576 encoder delay][529 decoder delay][input][tail];
   aligned output starts after the first three and takes as many frames as the input had
   (LAME's padding is always >= 529, so every input sample comes back). */
#include <float.h>
#include <lame/lame.h>
#include <math.h>
#include <mpg123.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp3.cdef.h"

#define API __attribute__((visibility("default")))
#define ENC_DELAY 576
#define DEC_DELAY 529
#define BLOCK 1152
#define PIPE_BYTES (1 << 18)

static int fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, FMA_ERRLEN, fmt, ap);
    va_end(ap);
    return code;
}

API void fma_scan(const float *x, int64_t n, float *peak, int64_t *bad) {
    float m = 0.0f;
    *bad = -1;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (!(a <= 3.4028235e38f)) { /* NaN or inf */
            *bad = i;
            break;
        }
        m = a > m ? a : m;
    }
    *peak = m;
}

API int fma_frame_size(int sample_rate) { return sample_rate >= 32000 ? 1152 : 576; }

API int64_t fma_raw_frames(int64_t n, int sample_rate, int info_frame) {
    int64_t frame = fma_frame_size(sample_rate);
    int64_t pad = frame - ((ENC_DELAY + n) % frame);
    if (pad < ENC_DELAY) pad += frame; /* LAME keeps >= 576 of padding */
    return (info_frame ? frame : 0) + ENC_DELAY + n + pad;
}

static int configure(lame_global_flags *g, int sample_rate, int channels, int kbps, int quality) {
    lame_set_in_samplerate(g, sample_rate);
    lame_set_out_samplerate(g, sample_rate); /* never resample */
    lame_set_num_channels(g, channels);
    lame_set_mode(g, channels == 1 ? MONO : STEREO);
    lame_set_brate(g, kbps);
    lame_set_quality(g, quality);
    lame_set_disable_reservoir(g, 1);
    return lame_init_params(g);
}

/* Header and side information of one frame, in bytes. */
static int side_bytes(int sample_rate, int channels) {
    return sample_rate >= 32000 ? (channels == 1 ? 21 : 36) : (channels == 1 ? 13 : 21);
}

/* Bytes of Huffman data a CBR frame leaves each channel per granule (padding aside). */
static int main_bytes(int sample_rate, int channels, int kbps) {
    int mpeg1 = sample_rate >= 32000;
    int frame_bytes = (mpeg1 ? 2 : 1) * 72000 * kbps / sample_rate;
    return (frame_bytes - side_bytes(sample_rate, channels)) / (channels * (mpeg1 ? 2 : 1));
}

/* Stereo frames with fewer bytes than this per channel and granule (8 kbps at 22.05 and
   24 kHz: 3 and 1.5) carry granules that libmpg123 rejects ("Can't rewind stream"): it
   zero-fills the frame and the right channel comes back uncorrelated. */
#define MIN_MAIN_BYTES 4

API int fma_layout(int sample_rate, int channels, int bitrate_kbps, int *effective_kbps,
                   int *info_frame) {
    lame_global_flags *g = lame_init();
    if (!g) return FMA_ENOMEM;
    int r = configure(g, sample_rate, channels, bitrate_kbps, 7);
    int kbps = r >= 0 ? lame_get_brate(g) : 0, prev = 0;
    while (r >= 0 && kbps > prev && main_bytes(sample_rate, channels, kbps) < MIN_MAIN_BYTES) {
        prev = kbps; /* the next bitrate up that LAME takes at this rate */
        lame_close(g);
        if (!(g = lame_init())) return FMA_ENOMEM;
        r = configure(g, sample_rate, channels, prev + 8, 7);
        kbps = r >= 0 ? lame_get_brate(g) : 0;
    }
    if (r >= 0) {
        /* LAME drops the Info frame when one CBR frame cannot hold the side info and the
           156-byte Xing/LAME tag (InitVbrTag); lame_get_bWriteVbrTag does not reflect that. */
        int frame_bytes = (sample_rate >= 32000 ? 2 : 1) * 72000 * kbps / sample_rate;
        *effective_kbps = kbps;
        *info_frame = lame_get_bWriteVbrTag(g) &&
                      frame_bytes >= side_bytes(sample_rate, channels) + 156 && frame_bytes <= 2880;
    }
    lame_close(g);
    return r < 0 ? FMA_EARG : 0;
}

/* --- the byte pipe between the encoder thread and the decoder ------------------------ */

#define PIPE_WAKE (1 << 14) /* the reader sleeps until this much is there (or the end) */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned char buf[PIPE_BYTES];
    size_t head, len; /* ring buffer */
    int closed, failed, writer_waiting;
    char err[FMA_ERRLEN];
} pipe_t;

/* Wakeups are batched: the writer signals when the pipe crosses PIPE_WAKE bytes, the reader
   only when it frees space for a writer that waits. Per-frame signalling cost stereo calls
   ~10% in context switches. */
static void pipe_put(pipe_t *p, const unsigned char *d, size_t n) {
    pthread_mutex_lock(&p->mu);
    while (n > 0 && !p->failed) {
        while (p->len == PIPE_BYTES && !p->failed) {
            p->writer_waiting = 1;
            pthread_cond_broadcast(&p->cv);
            pthread_cond_wait(&p->cv, &p->mu);
        }
        p->writer_waiting = 0;
        size_t tail = (p->head + p->len) % PIPE_BYTES;
        size_t room = PIPE_BYTES - p->len, run = PIPE_BYTES - tail;
        size_t k = n < room ? n : room;
        k = k < run ? k : run;
        memcpy(p->buf + tail, d, k);
        size_t before = p->len;
        p->len += k;
        d += k;
        n -= k;
        if (before < PIPE_WAKE && p->len >= PIPE_WAKE) pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

/* Up to cap bytes; 0 once the writer closed and everything was read. */
static size_t pipe_get(pipe_t *p, unsigned char *d, size_t cap) {
    pthread_mutex_lock(&p->mu);
    if (p->len == 0)
        while (p->len < PIPE_WAKE && !p->closed) pthread_cond_wait(&p->cv, &p->mu);
    size_t run = PIPE_BYTES - p->head, k = p->len < cap ? p->len : cap;
    k = k < run ? k : run;
    memcpy(d, p->buf + p->head, k);
    p->head = (p->head + k) % PIPE_BYTES;
    p->len -= k;
    if (p->writer_waiting) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return k;
}

static void pipe_close(pipe_t *p, const char *err) {
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    if (err) snprintf(p->err, sizeof p->err, "%s", err);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* --- encoder --------------------------------------------------------------------------- */

typedef struct {
    const float *in;
    int64_t frames;
    int channels, sample_rate, bitrate, quality;
    float gain;
    pipe_t *pipe;        /* pipelined: bytes go here */
    unsigned char *mp3;  /* sequential: bytes go here */
    size_t mp3_len, mp3_cap;
    int rc;
    char err[FMA_ERRLEN];
} encoder_t;

static int emit(encoder_t *e, const unsigned char *d, int n) {
    if (n <= 0) return 0;
    if (e->pipe) {
        pipe_put(e->pipe, d, (size_t)n);
        return 0;
    }
    if (e->mp3_len + (size_t)n > e->mp3_cap) {
        size_t cap = e->mp3_cap ? e->mp3_cap * 2 : 1 << 16;
        while (cap < e->mp3_len + (size_t)n) cap *= 2;
        unsigned char *b = realloc(e->mp3, cap);
        if (!b) return -1;
        e->mp3 = b;
        e->mp3_cap = cap;
    }
    memcpy(e->mp3 + e->mp3_len, d, (size_t)n);
    e->mp3_len += (size_t)n;
    return 0;
}

static void *encode(void *arg) {
    encoder_t *e = arg;
    lame_global_flags *g = lame_init();
    unsigned char *out = malloc((size_t)(1.25 * BLOCK + 7200));
    float *scaled = malloc(sizeof(float) * BLOCK * 2);
    e->rc = 0;
    if (!g || !out || !scaled) {
        e->rc = fail(e->err, FMA_ENOMEM, "out of memory (lame_init)");
        goto done;
    }
    if (configure(g, e->sample_rate, e->channels, e->bitrate, e->quality) < 0) {
        e->rc = fail(e->err, FMA_EARG, "LAME rejected %d Hz, %d kbps, quality %d", e->sample_rate,
                     e->bitrate, e->quality);
        goto done;
    }
    if (lame_get_encoder_delay(g) != ENC_DELAY) { /* the alignment assumes LAME 3.100's delay */
        e->rc = fail(e->err, FMA_ENCODE, "this LAME has an encoder delay of %d, not %d",
                     lame_get_encoder_delay(g), ENC_DELAY);
        goto done;
    }
    for (int64_t i0 = 0; i0 < e->frames; i0 += BLOCK) {
        int n = (int)(e->frames - i0 < BLOCK ? e->frames - i0 : BLOCK);
        const float *ch[2];
        for (int c = 0; c < e->channels; c++) {
            ch[c] = e->in + (int64_t)c * e->frames + i0;
            if (e->gain != 1.0f) { /* peak above 1: LAME gets the scaled-down signal */
                for (int k = 0; k < n; k++) scaled[c * BLOCK + k] = ch[c][k] * e->gain;
                ch[c] = scaled + c * BLOCK;
            }
        }
        int r = lame_encode_buffer_ieee_float(g, ch[0], e->channels == 2 ? ch[1] : ch[0], n, out,
                                              (int)(1.25 * BLOCK + 7200));
        if (r < 0) {
            e->rc = fail(e->err, FMA_ENCODE, "LAME encode error %d", r);
            goto done;
        }
        if (emit(e, out, r) != 0) {
            e->rc = fail(e->err, FMA_ENOMEM, "out of memory");
            goto done;
        }
    }
    int r = lame_encode_flush(g, out, (int)(1.25 * BLOCK + 7200));
    if (r < 0) e->rc = fail(e->err, FMA_ENCODE, "LAME flush error %d", r);
    else if (emit(e, out, r) != 0) e->rc = fail(e->err, FMA_ENOMEM, "out of memory");
done:
    if (g) lame_close(g);
    free(out);
    free(scaled);
    if (e->pipe) pipe_close(e->pipe, e->rc ? e->err : NULL);
    return NULL;
}

/* --- decoder --------------------------------------------------------------------------- */

typedef struct {
    float *out;
    int64_t skip, want, done, stride; /* stride: frames per output channel */
    int channels;
    float gain;
} sink_t;

/* Takes interleaved decoded frames; keeps [skip, skip + want) planar, scaled. */
static void sink_take(sink_t *s, const float *pcm, int64_t n) {
    int64_t from = 0;
    if (s->skip > 0) {
        from = s->skip < n ? s->skip : n;
        s->skip -= from;
    }
    for (int64_t i = from; i < n && s->done < s->want; i++, s->done++)
        for (int c = 0; c < s->channels; c++) {
            float v = pcm[i * s->channels + c] * s->gain;
            /* a peak near FLT_MAX times the codec's overshoot must not come back as inf */
            s->out[c * s->stride + s->done] = v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : v;
        }
}

/* mpg123 reads the MP3 through these: from the pipe (blocking until the encoder writes or
   closes) or from the finished buffer. A real end of stream lets it decode the last frame,
   which feed mode would hold back waiting for another header. */
typedef struct {
    pipe_t *pipe;
    const unsigned char *mem;
    size_t len, pos;
} source_t;

static mpg123_ssize_t source_read(void *h, void *dst, size_t n) {
    source_t *s = h;
    if (s->pipe) return (mpg123_ssize_t)pipe_get(s->pipe, dst, n);
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    memcpy(dst, s->mem + s->pos, k);
    s->pos += k;
    return (mpg123_ssize_t)k;
}

static off_t source_seek(void *h, off_t off, int whence) { /* a stream: never seekable */
    (void)h, (void)off, (void)whence;
    return -1;
}

static int decode_all(mpg123_handle *mh, source_t *src, sink_t *s, char *err) {
    if (mpg123_open_handle(mh, src) != MPG123_OK)
        return fail(err, FMA_DECODE, "libmpg123: %s", mpg123_strerror(mh));
    for (;;) {
        unsigned char *audio;
        size_t bytes;
        off_t num;
        int r = mpg123_decode_frame(mh, &num, &audio, &bytes);
        if (r == MPG123_OK || r == MPG123_NEW_FORMAT) {
            if (bytes)
                sink_take(s, (const float *)(void *)audio,
                          (int64_t)(bytes / (sizeof(float) * (size_t)s->channels)));
            continue;
        }
        if (r == MPG123_DONE) return 0;
        return fail(err, FMA_DECODE, "libmpg123: %s", mpg123_strerror(mh));
    }
}

static mpg123_handle *open_decoder(int sample_rate, int channels, char *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))mpg123_init);
    int e = 0;
    mpg123_handle *mh = mpg123_new(NULL, &e);
    if (!mh) {
        fail(err, FMA_ENOMEM, "libmpg123: %s", mpg123_plain_strerror(e));
        return NULL;
    }
    /* decode the raw stream: the Info frame as the silent frame it is, no gapless trimming */
    mpg123_param(mh, MPG123_ADD_FLAGS,
                 MPG123_QUIET | MPG123_FORCE_FLOAT | MPG123_IGNORE_INFOFRAME | MPG123_NO_PEEK_END, 0);
    mpg123_param(mh, MPG123_REMOVE_FLAGS, MPG123_GAPLESS, 0);
    mpg123_format_none(mh);
    mpg123_format(mh, sample_rate, channels == 1 ? MPG123_MONO : MPG123_STEREO, MPG123_ENC_FLOAT_32);
    if (mpg123_replace_reader_handle(mh, source_read, source_seek, NULL) != MPG123_OK) {
        fail(err, FMA_DECODE, "libmpg123: %s", mpg123_strerror(mh));
        mpg123_delete(mh);
        return NULL;
    }
    return mh;
}

API int fma_roundtrip(const float *in, int64_t frames, int channels, int sample_rate,
                      int bitrate_kbps, int quality, float in_gain, float out_gain,
                      int preserve_delay, int pipelined, int info_frame, float *out, char *err) {
    if (channels < 1 || channels > 2 || frames < 1)
        return fail(err, FMA_EARG, "need 1 or 2 channels and at least one frame");
    int64_t raw = fma_raw_frames(frames, sample_rate, info_frame);
    int64_t start = (info_frame ? fma_frame_size(sample_rate) : 0) + ENC_DELAY + DEC_DELAY;
    sink_t sink = {out, preserve_delay ? 0 : start,
                   preserve_delay ? raw : frames, 0, preserve_delay ? raw : frames, channels,
                   out_gain};
    mpg123_handle *mh = open_decoder(sample_rate, channels, err);
    if (!mh) return FMA_DECODE;
    pipe_t *pipe = NULL;
    encoder_t enc = {in, frames, channels, sample_rate, bitrate_kbps, quality, in_gain, NULL, NULL,
                     0, 0, 0, {0}};
    int rc = 0;
    source_t src = {NULL, NULL, 0, 0};
    pthread_t th;
    int threaded = 0;
    if (pipelined && (pipe = calloc(1, sizeof *pipe))) {
        pthread_mutex_init(&pipe->mu, NULL);
        pthread_cond_init(&pipe->cv, NULL);
        enc.pipe = src.pipe = pipe;
        threaded = pthread_create(&th, NULL, encode, &enc) == 0;
        if (!threaded) enc.pipe = src.pipe = NULL;
    }
    if (threaded) {
        rc = decode_all(mh, &src, &sink, err);
        pthread_mutex_lock(&pipe->mu); /* unblock the encoder if decoding stopped early */
        pipe->failed = rc != 0;
        pthread_cond_broadcast(&pipe->cv);
        pthread_mutex_unlock(&pipe->mu);
        pthread_join(th, NULL);
    } else {
        encode(&enc);
        src.mem = enc.mp3;
        src.len = enc.mp3_len;
        if (enc.rc == 0) rc = decode_all(mh, &src, &sink, err);
    }
    if (enc.rc != 0) rc = fail(err, enc.rc, "%s", enc.err);
    if (rc == 0 && sink.done < sink.want) /* LAME's padding makes this impossible; never hide it */
        rc = fail(err, FMA_DECODE, "decoded %lld frames, expected %lld", (long long)sink.done,
                  (long long)sink.want);
    if (pipe) {
        pthread_mutex_destroy(&pipe->mu);
        pthread_cond_destroy(&pipe->cv);
        free(pipe);
    }
    free(enc.mp3);
    mpg123_delete(mh);
    return rc;
}
