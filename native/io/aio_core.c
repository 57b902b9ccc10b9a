/* Dispatch by content, the read pipeline (window, mono mix-down, resampling, strided output)
   and the error plumbing shared by every backend. */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"

#define AIO_HEAD 512

#define PIPE_BLOCK 8192 /* input frames decoded per step; fixed so chunking never changes output */

int aio_fail(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, AIO_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

void aio_set_str(char *dst, size_t cap, const char *src) { /* truncating copy, no printf */
    if (cap == 0) return;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = 0;
}

static int looks_like_mpeg_audio(const unsigned char *b, size_t n) {
    if (n >= 3 && memcmp(b, "ID3", 3) == 0) return 1;
    if (n < 4 || b[0] != 0xFF || (b[1] & 0xE0) != 0xE0) return 0;
    int version = (b[1] >> 3) & 3, layer = (b[1] >> 1) & 3;
    int bitrate = b[2] >> 4, srate = (b[2] >> 2) & 3;
    return version != 1 && layer != 0 && bitrate != 15 && srate != 3;
}

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), m = strlen(ext);
    return n > m && strcasecmp(path + n - m, ext) == 0;
}

int aio_src_read_at(const aio_src *s, void *dst, size_t n, int64_t off) {
    if (off < 0) return -1;
    if (s->mem) {
        if (off > s->size || (int64_t)n > s->size - off) return -1;
        memcpy(dst, s->mem + off, n);
        return 0;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(s->fd, (char *)dst + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int aio_sink_write(aio_sink *s, const void *p, size_t n) {
    if (s->fd < 0) {
        if (s->len + (int64_t)n > s->cap) {
            int64_t cap = s->cap ? s->cap : 1 << 16;
            while (cap < s->len + (int64_t)n) cap *= 2;
            unsigned char *b = realloc(s->buf, (size_t)cap);
            if (!b) return errno = ENOMEM, -1;
            s->buf = b;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += (int64_t)n;
        return 0;
    }
    const char *c = p;
    while (n > 0) {
        ssize_t r = write(s->fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int is_riff_wave(const unsigned char *head, size_t got) {
    int riff = got >= 12 &&
               (memcmp(head, "RIFF", 4) == 0 || memcmp(head, "RF64", 4) == 0 ||
                memcmp(head, "BW64", 4) == 0) &&
               memcmp(head + 8, "WAVE", 4) == 0;
    return riff || aio_is_w64(head, got);
}

/* Picks the backend by content: our WAV reader, libFLAC for native FLAC, libav's Vorbis decoder
   over our Ogg walk for Ogg Vorbis (libvorbisfile for chained streams), libmpg123 for MPEG
   audio, on macOS AudioToolbox for AIFF, CAF and M4A, libav for the rest. */
static int open_backend(aio_file *f, aio_src src, const unsigned char *head, size_t got,
                        char *err) {
    int rc = AIO_EFORMAT, riff = is_riff_wave(head, got);
    if (riff) {
        rc = aio_wav_open(f, src, head, got, err); /* owns src.fd on success */
        if (rc == 0) return 0;
        if (src.fd >= 0) close(src.fd);
        src.fd = -1;
        if (rc != AIO_EFORMAT) return rc;
    } else if (aio_is_native_flac(head, got)) {
        rc = aio_flac_open(f, src, err); /* owns src.fd */
        if (rc != AIO_EFORMAT) return rc;
        src.fd = -1;
    }
    if (aio_is_ogg_vorbis(head, got)) {
        rc = aio_ogg_open(f, src, err); /* owns src.fd */
        if (rc != AIO_EFORMAT) return rc;
        src.fd = -1;
    }
    if (!riff && (looks_like_mpeg_audio(head, got) || has_ext(f->path, ".mp3"))) {
        rc = aio_mp3_open(f, src, err); /* owns src.fd (opens the path when it is -1) */
        src.fd = -1;
        if (rc == 0) return 0;
    }
    if (src.fd >= 0) close(src.fd);
#if defined(AIO_HAVE_AUDIOTOOLBOX) /* macOS: AIFF, CAF and M4A through AudioToolbox first */
    rc = aio_at_open(f, head, got, err);
    if (rc != AIO_EFORMAT) return rc;
#endif
    return aio_av_open(f, err);
}

char *aio_literal_url(const char *path) {
    size_t n = strlen(path);
    char *url = malloc(n + 6);
    if (url) {
        memcpy(url, "file:", 5);
        memcpy(url + 5, path, n + 1);
    }
    return url;
}

static aio_file *new_file(const char *path, char *err) {
    aio_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path ? path : ""))) {
        free(f);
        aio_fail(err, AIO_ENOMEM, "out of memory");
        return NULL;
    }
    f->info.frames = -1;
    return f;
}

static int finish_open(aio_file *f, int rc, aio_file **out, aio_info *info) {
    if (rc != 0) {
        free(f->path);
        free(f);
        return rc;
    }
    *info = f->info;
    *out = f;
    return 0;
}

AIO_API int aio_open_memory(const void *data, int64_t size, const char *name, aio_file **out,
                            aio_info *info, char *err) {
    *out = NULL;
    if (!data || size <= 0) return aio_fail(err, AIO_EDECODE, "no data (0 bytes)");
    aio_file *f = new_file(name, err);
    if (!f) return AIO_ENOMEM;
    f->mem = data;
    f->mem_size = f->size = size;
    aio_src src = {-1, data, size};
    size_t got = size < AIO_HEAD ? (size_t)size : AIO_HEAD;
    return finish_open(f, open_backend(f, src, data, got, err), out, info);
}

AIO_API int aio_open(const char *path, aio_file **out, aio_info *info, char *err) {
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return aio_fail(err, AIO_ENOENT, "file not found");
        return aio_fail(err, AIO_EIO, "cannot open file: %s", strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int is_dir = S_ISDIR(st.st_mode);
        close(fd);
        return aio_fail(err, AIO_EIO, is_dir ? "is a directory"
                                             : "not a regular file (a device, FIFO or socket)");
    }
    /* O_NONBLOCK stays: it does not change reads of a regular file */
    if (st.st_size == 0) {
        close(fd);
        return aio_fail(err, AIO_EDECODE, "file is empty");
    }
    unsigned char head[AIO_HEAD] = {0}; /* detection, and a WAV header's chunks */
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got < 0) {
        close(fd);
        return aio_fail(err, AIO_EIO, "cannot read file: %s", strerror(errno));
    }

    aio_file *f = new_file(path, err);
    if (!f) {
        close(fd);
        return AIO_ENOMEM;
    }
    f->size = st.st_size;
    aio_src src = {fd, NULL, st.st_size};
    return finish_open(f, open_backend(f, src, head, (size_t)got, err), out, info);
}

AIO_API int aio_count_frames(aio_file *f, int64_t *frames, char *err) {
    if (f->info.frames < 0) {
        int64_t n = 0;
        int rc = f->be->count(f, &n, err);
        if (rc != 0) return rc;
        f->info.frames = n;
    }
    *frames = f->info.frames;
    return 0;
}


AIO_API void aio_close(aio_file *f) {
    if (!f) return;
    f->be->close(f);
    free(f->path);
    free(f);
}

/* read() bounded by the exact length when known, so containers that decode a little more
   (codec padding) never leak it. */
static int64_t file_read(aio_file *f, float *out, int64_t frames, char *err) {
    if (f->info.frames >= 0) {
        int64_t left = f->info.frames - f->pos;
        if (left <= 0) return 0;
        if (frames > left) frames = left;
    }
    int64_t n = f->be->read(f, out, frames, err);
    if (n > 0) f->pos += n;
    return n;
}

static int file_seek(aio_file *f, int64_t frame, char *err) {
    if (frame == f->pos) return 0;
    int rc = f->be->seek(f, frame, err);
    if (rc == 0) f->pos = frame;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

struct aio_pipe {
    aio_file *f;
    int64_t in_left;   /* input frames still to read; < 0: until the end of the file */
    int64_t in_read;   /* input frames read so far */
    int in_ch, out_ch, mono_mode, in_rate, out_rate;
    aio_resampler *rs;
    float *block;      /* PIPE_BLOCK x in_ch decoded frames */
    float *mixed;      /* PIPE_BLOCK x out_ch after mix-down */
    float *staged;     /* resampler output waiting to be copied out */
    int64_t staged_cap, staged_len, staged_pos;
    int64_t out_done;  /* frames handed out */
    int64_t out_target;/* frames the pipe will give in total; < 0 until known */
    int in_eof, flushed;
};

AIO_API int64_t aio_resample_frames(int64_t in_frames, int in_rate, int out_rate) {
    if (in_rate == out_rate) return in_frames;
    /* ceil(in * out / in_rate), the length librosa and torchaudio return */
    __int128 num = (__int128)in_frames * out_rate + in_rate - 1;
    return (int64_t)(num / in_rate);
}

AIO_API int aio_pipe_new(aio_file *f, int64_t start, int64_t count, int mono_mode, int out_rate,
                         int quality, aio_pipe **out, char *err) {
    *out = NULL;
    if (start < 0) return aio_fail(err, AIO_EARG, "start must be >= 0");
    /* soxr's filters and buffers grow with the ratio: a 4 Hz stream asked for at 16 kHz took
       a second (a minute under ASan) on 20 KB of input */
    int64_t in_rate = f->info.sample_rate;
    if (out_rate > 0 && out_rate != in_rate &&
        (out_rate > in_rate * AIO_MAX_RATE_RATIO || in_rate > out_rate * AIO_MAX_RATE_RATIO))
        return aio_fail(err, AIO_EARG,
                        "cannot resample %lld Hz to sr=%d Hz: the rates are more than %d times "
                        "apart", (long long)in_rate, out_rate, AIO_MAX_RATE_RATIO);
    aio_pipe *p = calloc(1, sizeof *p);
    if (!p) return aio_fail(err, AIO_ENOMEM, "out of memory");
    p->f = f;
    p->in_ch = f->info.channels;
    p->out_ch = mono_mode ? 1 : p->in_ch;
    p->mono_mode = mono_mode;
    p->in_rate = f->info.sample_rate;
    p->out_rate = out_rate > 0 ? out_rate : p->in_rate;
    int64_t total = f->info.frames;
    if (total >= 0 && start > total) start = total;
    p->in_left = count;
    if (total >= 0) {
        int64_t avail = total - start;
        p->in_left = (count < 0 || count > avail) ? avail : count;
    }
    p->out_target = p->in_left >= 0 ? aio_resample_frames(p->in_left, p->in_rate, p->out_rate) : -1;
    int rc = file_seek(f, start, err);
    if (rc != 0) goto fail;
    p->block = malloc(sizeof(float) * PIPE_BLOCK * (size_t)p->in_ch);
    p->mixed = malloc(sizeof(float) * PIPE_BLOCK * (size_t)p->out_ch);
    if (!p->block || !p->mixed) {
        rc = aio_fail(err, AIO_ENOMEM, "out of memory");
        goto fail;
    }
    if (p->out_rate != p->in_rate) {
        p->rs = aio_resampler_new(p->in_rate, p->out_rate, p->out_ch, quality, err);
        if (!p->rs) {
            rc = AIO_EARG;
            goto fail;
        }
        p->staged_cap = aio_resample_frames(PIPE_BLOCK, p->in_rate, p->out_rate) + 1024;
        p->staged = malloc(sizeof(float) * (size_t)p->staged_cap * (size_t)p->out_ch);
        if (!p->staged) {
            rc = aio_fail(err, AIO_ENOMEM, "out of memory");
            goto fail;
        }
    }
    *out = p;
    return 0;
fail:
    aio_pipe_free(p);
    return rc;
}

AIO_API int64_t aio_pipe_total(aio_pipe *p) { return p->out_target; }

/* seconds x rate as a frame index: Python's round() (half to even), capped at 2^62 */
static int64_t frames_at(double seconds, int rate) {
    double x = seconds * (double)rate;
    return (int64_t)nearbyint(x < 0x1p62 ? x : 0x1p62);
}

AIO_API int aio_source_open(aio_source *s, const char *path, const void *data, int64_t size,
                            const char *name) {
    s->file = NULL;
    s->pipe = NULL;
    s->total = -1;
    s->err[0] = 0;
    int rc = path ? aio_open(path, &s->file, &s->info, s->err)
                  : aio_open_memory(data, size, name, &s->file, &s->info, s->err);
    if (rc != 0) return rc;
    if (s->start < 0) { /* far past any end (1e300 s) is just past the end: zero frames */
        s->start = frames_at(s->offset, s->info.sample_rate);
        s->count = s->duration < 0 ? -1 : frames_at(s->duration, s->info.sample_rate);
        if (s->duration >= 0 && s->count < 1) s->count = 1;
    }
    rc = aio_pipe_new(s->file, s->start, s->count, s->mono_mode, s->out_rate, s->quality,
                      &s->pipe, s->err);
    if (rc != 0) {
        aio_close(s->file);
        s->file = NULL;
        return rc;
    }
    s->total = s->pipe->out_target;
    return 0;
}

AIO_API int aio_probe(const char *path, aio_source *s) {
    aio_file *f = NULL;
    s->err[0] = 0;
    int rc = aio_open(path, &f, &s->info, s->err);
    if (rc != 0) return rc;
    rc = aio_count_frames(f, &s->total, s->err);
    s->info = f->info;
    aio_close(f);
    return rc;
}

AIO_API void aio_source_close(aio_source *s) {
    aio_pipe_free(s->pipe);
    aio_close(s->file);
    s->pipe = NULL;
    s->file = NULL;
}

AIO_API void aio_pipe_free(aio_pipe *p) {
    if (!p) return;
    aio_resampler_free(p->rs);
    free(p->block);
    free(p->mixed);
    free(p->staged);
    free(p);
}

static void mix_down(const float *in, float *out, int64_t n, int ch, int mode) {
    float w = mode == 2 ? 1.0f / __builtin_sqrtf((float)ch) : 1.0f / (float)ch;
    for (int64_t i = 0; i < n; i++) {
        float s = 0.0f;
        for (int c = 0; c < ch; c++) s += in[i * ch + c];
        out[i] = s * w;
    }
}

static void scatter(const float *src, int64_t n, int ch, float *out, int64_t fs, int64_t cs) {
    if (fs == ch && cs == 1) {
        memcpy(out, src, sizeof(float) * (size_t)(n * ch));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < ch; c++) out[i * fs + c * cs] = src[i * ch + c];
}

/* Decodes the next block of input (window-bounded) into p->block; returns frames or < 0. */
static int64_t pipe_decode(aio_pipe *p, float *dst, int64_t cap, char *err) {
    if (p->in_eof) return 0;
    int64_t want = cap;
    if (p->in_left >= 0 && want > p->in_left) want = p->in_left;
    int64_t got = 0;
    while (got < want) {
        int64_t n = file_read(p->f, dst + got * p->in_ch, want - got, err);
        if (n < 0) return n;
        if (n == 0) break;
        got += n;
    }
    if (p->in_left >= 0) p->in_left -= got;
    p->in_read += got;
    if (got < want || p->in_left == 0) p->in_eof = 1;
    return got;
}

/* Output without resampling: decode straight into the caller's memory when the layout allows. */
static int64_t pipe_read_direct(aio_pipe *p, float *out, int64_t frames, int64_t fs, int64_t cs,
                                char *err) {
    int64_t done = 0;
    int direct = !p->mono_mode && fs == p->in_ch && cs == 1;
    while (done < frames && !p->in_eof) {
        float *o = out + done * fs;
        if (direct) {
            int64_t n = pipe_decode(p, o, frames - done, err);
            if (n < 0) return n;
            done += n;
            continue;
        }
        int64_t want = frames - done < PIPE_BLOCK ? frames - done : PIPE_BLOCK;
        int64_t n = pipe_decode(p, p->block, want, err);
        if (n < 0) return n;
        if (p->mono_mode) {
            mix_down(p->block, p->mixed, n, p->in_ch, p->mono_mode);
            scatter(p->mixed, n, 1, o, fs, cs);
        } else {
            scatter(p->block, n, p->in_ch, o, fs, cs);
        }
        done += n;
    }
    return done;
}

/* Refills p->staged with resampled frames; returns frames staged (0 when finished) or < 0. */
static int64_t pipe_stage(aio_pipe *p, char *err) {
    p->staged_len = p->staged_pos = 0;
    while (p->staged_len == 0 && !p->flushed) {
        int64_t consumed = 0, n;
        if (!p->in_eof) {
            int64_t got = pipe_decode(p, p->block, PIPE_BLOCK, err);
            if (got < 0) return got;
            if (got == 0) continue;
            const float *src = p->block;
            if (p->mono_mode) {
                mix_down(p->block, p->mixed, got, p->in_ch, p->mono_mode);
                src = p->mixed;
            }
            n = aio_resampler_process(p->rs, src, got, &consumed, p->staged, p->staged_cap, err);
            if (n >= 0 && consumed != got)
                return aio_fail(err, AIO_EDECODE, "resampler took %lld of %lld frames",
                                (long long)consumed, (long long)got);
        } else {
            n = aio_resampler_process(p->rs, NULL, 0, &consumed, p->staged, p->staged_cap, err);
            if (n == 0) p->flushed = 1;
        }
        if (n < 0) return n;
        p->staged_len = n;
    }
    return p->staged_len;
}

static int64_t pipe_read_resampled(aio_pipe *p, float *out, int64_t frames, int64_t fs,
                                   int64_t cs, char *err) {
    int64_t done = 0;
    while (done < frames) {
        if (p->staged_pos == p->staged_len) {
            int64_t n = pipe_stage(p, err);
            if (n < 0) return n;
            if (n == 0) break;
        }
        int64_t n = p->staged_len - p->staged_pos;
        if (n > frames - done) n = frames - done;
        if (p->in_eof) { /* never more than ceil(in * ratio), whatever soxr still holds */
            int64_t left = aio_resample_frames(p->in_read, p->in_rate, p->out_rate) - p->out_done - done;
            if (left <= 0) break;
            if (n > left) n = left;
        }
        scatter(p->staged + p->staged_pos * p->out_ch, n, p->out_ch, out + done * fs, fs, cs);
        p->staged_pos += n;
        done += n;
    }
    /* soxr may end a frame short of ceil(in * ratio): pad with silence to the exact length */
    if (p->flushed && p->staged_pos == p->staged_len) {
        int64_t target = aio_resample_frames(p->in_read, p->in_rate, p->out_rate);
        while (done < frames && p->out_done + done < target) {
            for (int c = 0; c < p->out_ch; c++) out[done * fs + c * cs] = 0.0f;
            done++;
        }
    }
    return done;
}

AIO_API int64_t aio_pipe_read(aio_pipe *p, float *out, int64_t frames, int64_t frame_stride,
                              int64_t chan_stride, char *err) {
    if (frames < 0) return aio_fail(err, AIO_EARG, "frames must be >= 0");
    if (p->out_target >= 0 && frames > p->out_target - p->out_done)
        frames = p->out_target - p->out_done;
    if (frames <= 0) return 0;
    int64_t n = p->rs ? pipe_read_resampled(p, out, frames, frame_stride, chan_stride, err)
                      : pipe_read_direct(p, out, frames, frame_stride, chan_stride, err);
    if (n > 0) p->out_done += n;
    if (p->in_eof && p->out_target < 0 && (!p->rs || p->flushed))
        p->out_target = aio_resample_frames(p->in_read, p->in_rate, p->out_rate);
    return n;
}

/* ------------------------------------------------------------------------------------------ */

static int save_any(const char *path, const char *container, unsigned char **mem,
                    int64_t *mem_size, const aio_audio *a, char *err) {
    if (a->channels < 1 || a->sample_rate < 1 || a->frames < 0)
        return aio_fail(err, AIO_EARG, "invalid shape or sample rate");
    if (strcmp(container, "wav") == 0 || strcmp(container, "w64") == 0) {
        if (a->encoding != AIO_ENC_ULAW && a->encoding != AIO_ENC_ALAW)
            return aio_wav_save(path, container, mem, mem_size, a, err);
    }
#if defined(AIO_HAVE_AUDIOTOOLBOX) /* macOS: AIFF, CAF and M4A files through AudioToolbox */
    if (path) {
        int rc = aio_at_save(path, container, a, err);
        if (rc != AIO_EFORMAT) return rc;
    }
#endif
    return aio_av_save(path, container, mem, mem_size, a, err);
}

AIO_API int aio_save(const char *path, const char *container, const float *data, int64_t frames,
                     int channels, int64_t frame_stride, int64_t chan_stride, int sample_rate,
                     int encoding, int bitrate, int clip, int compression, char *err) {
    aio_audio a = {data, frames, frame_stride, chan_stride, channels, sample_rate, encoding,
                   bitrate, clip, compression};
    return save_any(path, container, NULL, NULL, &a, err);
}

AIO_API int aio_save_memory(const char *container, const float *data, int64_t frames,
                            int channels, int64_t frame_stride, int64_t chan_stride,
                            int sample_rate, int encoding, int bitrate, int clip, int compression,
                            unsigned char **out, int64_t *out_size, char *err) {
    aio_audio a = {data, frames, frame_stride, chan_stride, channels, sample_rate, encoding,
                   bitrate, clip, compression};
    *out = NULL;
    *out_size = 0;
    return save_any(NULL, container, out, out_size, &a, err);
}

AIO_API void aio_free(void *p) { free(p); }
