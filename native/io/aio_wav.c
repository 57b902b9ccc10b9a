/* Our own WAV reader and writer: RIFF/RF64/BW64, PCM 8/16/24/32, float32/64 and
   WAVE_FORMAT_EXTENSIBLE. Other codecs inside WAV (mu-law, A-law, ADPCM) go to libav. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the WAV fast path assumes a little-endian host"
#endif

#define WAV_BUF_BYTES (1 << 20)

enum { S_U8, S_I16, S_I24, S_I32, S_F32, S_F64 };

typedef struct {
    aio_src src;
    int kind;        /* S_* */
    int block_align; /* bytes per frame */
    int64_t data_off, frames;
} wav_impl;

/* The conversion buffer: one per thread, kept for the thread's life (freed at its exit). A
   fresh 1 MiB buffer per load is fresh mmap'd memory: its page faults cost more than reading
   1 s of PCM16 (40 of 90 us) */
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static int buf_key_ok;

static void make_buf_key(void) { buf_key_ok = pthread_key_create(&buf_key, free) == 0; }

static unsigned char *conversion_buffer(void) {
    pthread_once(&buf_once, make_buf_key);
    if (!buf_key_ok) return NULL;
    unsigned char *b = pthread_getspecific(buf_key);
    if (!b && (b = malloc(WAV_BUF_BYTES)) && pthread_setspecific(buf_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static void convert(const unsigned char *src, float *dst, int64_t n, int kind) {
    switch (kind) {
        case S_U8:
            for (int64_t i = 0; i < n; i++) dst[i] = ((float)src[i] - 128.0f) * (1.0f / 128.0f);
            break;
        case S_I16: {
            const int16_t *s = (const int16_t *)(const void *)src;
            for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i] * (1.0f / 32768.0f);
            break;
        }
        case S_I24:
            for (int64_t i = 0; i < n; i++, src += 3) {
                int32_t v = (int32_t)((uint32_t)src[0] << 8 | (uint32_t)src[1] << 16 |
                                      (uint32_t)src[2] << 24);
                dst[i] = (float)v * (1.0f / 2147483648.0f);
            }
            break;
        case S_I32: {
            const int32_t *s = (const int32_t *)(const void *)src;
            for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i] * (1.0f / 2147483648.0f);
            break;
        }
        case S_F32:
            memcpy(dst, src, sizeof(float) * (size_t)n);
            break;
        case S_F64: {
            const double *s = (const double *)(const void *)src;
            for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
            break;
        }
    }
}

static int64_t wav_read(aio_file *f, float *out, int64_t frames, char *err) {
    wav_impl *w = f->impl;
    int64_t left = w->frames - f->pos;
    if (frames > left) frames = left;
    int ch = f->info.channels;
    int64_t per_buf = WAV_BUF_BYTES / w->block_align, done = 0;
    unsigned char *buf = NULL;
    if (w->kind != S_F32 && frames > 0 && !(buf = conversion_buffer()))
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    while (done < frames) {
        int64_t n = frames - done < per_buf ? frames - done : per_buf;
        int64_t off = w->data_off + (f->pos + done) * w->block_align;
        /* float32 needs no conversion: read straight into the output */
        void *dst = w->kind == S_F32 ? (void *)(out + done * ch) : (void *)buf;
        if (aio_src_read_at(&w->src, dst, (size_t)(n * w->block_align), off) != 0)
            return aio_fail(err, AIO_EIO, "read failed at frame %lld (file truncated?)",
                            (long long)(f->pos + done));
        if (w->kind != S_F32) convert(buf, out + done * ch, n * ch, w->kind);
        done += n;
    }
    return done;
}

static int wav_seek(aio_file *f, int64_t frame, char *err) {
    wav_impl *w = f->impl;
    if (frame > w->frames) frame = w->frames;
    (void)err;
    return 0; /* reads are positional */
}

static int wav_count(aio_file *f, int64_t *frames, char *err) {
    *frames = ((wav_impl *)f->impl)->frames;
    return 0;
}

static void wav_close(aio_file *f) {
    wav_impl *w = f->impl;
    if (!w) return;
    if (w->src.fd >= 0) close(w->src.fd);
    free(w);
}

static const aio_backend WAV = {"wav", wav_read, wav_seek, wav_count, wav_close};

/* Sony Wave64: GUID chunk ids ("riff"/"wave" and, for chunks, the 4 letters + this tail),
   64-bit sizes that include the 24-byte chunk header, 8-byte alignment. */
static const unsigned char W64_RIFF[16] = {'r', 'i', 'f', 'f', 0x2E, 0x91, 0xCF, 0x11,
                                           0xA5, 0xD6, 0x28, 0xDB, 0x04, 0xC1, 0x00, 0x00};
static const unsigned char W64_TAIL[12] = {0xF3, 0xAC, 0xD3, 0x11, 0x8C, 0xD1,
                                           0x00, 0xC0, 0x4F, 0x8E, 0xDB, 0x8A};

int aio_is_w64(const unsigned char *head, size_t n) {
    return n >= 40 && memcmp(head, W64_RIFF, 16) == 0 && memcmp(head + 24, "wave", 4) == 0 &&
           memcmp(head + 28, W64_TAIL, 12) == 0;
}

/* A header read: from `pre` (the file's first pre_n bytes) when it holds the range, else
   from the source (the chunks of a usual WAV header all sit in its first bytes: one read). */
static int hdr_read(const aio_src *src, const unsigned char *pre, int64_t pre_n, void *dst,
                    size_t n, int64_t off) {
    if (off >= 0 && off <= pre_n && (int64_t)n <= pre_n - off) {
        memcpy(dst, pre + off, n);
        return 0;
    }
    return aio_src_read_at(src, dst, n, off);
}

int aio_wav_open(aio_file *f, aio_src src, const unsigned char *pre, size_t head_n, char *err) {
    unsigned char fmt[40] = {0}, hdr[40];
    int64_t size = src.size, data_off = -1, data_bytes = -1, ds64_data = -1;
    int64_t pre_n = (int64_t)head_n < size ? (int64_t)head_n : size;
    int have_fmt = 0;
    if (hdr_read(&src, pre, pre_n, hdr, size < 40 ? 12 : 40, 0) != 0)
        return aio_fail(err, AIO_EDECODE, "truncated WAV header");
    int w64 = size >= 40 && aio_is_w64(hdr, 40);
    int rf64 = !w64 && memcmp(hdr, "RIFF", 4) != 0;
    int64_t pos = w64 ? 40 : 12, ck_len = w64 ? 24 : 8;
    while (pos + ck_len <= size) {
        unsigned char ck[24];
        if (hdr_read(&src, pre, pre_n, ck, (size_t)ck_len, pos) != 0) break;
        int64_t len;
        if (w64) {
            uint64_t total = le64(ck + 16);
            if (total < 24 || total > (uint64_t)size) total = (uint64_t)(size - pos);
            len = (int64_t)total - 24;
            if (memcmp(ck + 4, W64_TAIL, 12) != 0) memset(ck, 0, 4); /* not fmt/data */
        } else {
            len = le32(ck + 4);
        }
        if (memcmp(ck, "fmt ", 4) == 0) {
            if (len < 16) return aio_fail(err, AIO_EDECODE, "WAV fmt chunk too short (%lld)", (long long)len);
            size_t n = len < 40 ? (size_t)len : 40;
            if (hdr_read(&src, pre, pre_n, fmt, n, pos + ck_len) != 0)
                return aio_fail(err, AIO_EDECODE, "truncated WAV fmt chunk");
            have_fmt = 1;
        } else if (memcmp(ck, "ds64", 4) == 0 && len >= 16) {
            unsigned char d[16];
            if (hdr_read(&src, pre, pre_n, d, 16, pos + ck_len) == 0) ds64_data = (int64_t)le64(d + 8);
        } else if (memcmp(ck, "data", 4) == 0) {
            data_off = pos + ck_len;
            data_bytes = (rf64 && len == 0xFFFFFFFF && ds64_data >= 0) ? ds64_data : len;
            break;
        }
        pos += ck_len + len + (w64 ? (8 - (len & 7)) & 7 : (len & 1));
    }
    if (!have_fmt) return aio_fail(err, AIO_EDECODE, "not a valid WAV file: no fmt chunk");
    if (data_off < 0) return aio_fail(err, AIO_EDECODE, "not a valid WAV file: no data chunk");

    int tag = le16(fmt), channels = le16(fmt + 2), block_align = le16(fmt + 12);
    int bits = le16(fmt + 14);
    uint32_t rate = le32(fmt + 4);
    if (tag == 0xFFFE) tag = le16(fmt + 24); /* EXTENSIBLE: the sub-format GUID's first word */
    if (channels < 1 || rate < 1 || rate > 0x7FFFFFFF)
        return aio_fail(err, AIO_EDECODE, "invalid WAV fmt chunk (channels=%d, rate=%u)",
                        channels, rate);
    int bytes = block_align / channels, kind = -1;
    if (tag == 1 && bytes * channels == block_align) {
        static const int kinds[] = {-1, S_U8, S_I16, S_I24, S_I32};
        kind = bytes >= 1 && bytes <= 4 ? kinds[bytes] : -1;
    } else if (tag == 3 && bytes * channels == block_align) {
        kind = bytes == 4 ? S_F32 : bytes == 8 ? S_F64 : -1;
    }
    if (kind < 0 || bits < 1 || bits > bytes * 8)
        return AIO_EFORMAT; /* another codec in a WAV container: libav decodes it */

    /* streamed, truncated, or a size that lies (an RF64 ds64 near INT64_MAX): what the file has */
    if (data_bytes < 0 || data_bytes > size - data_off) data_bytes = size - data_off;
    wav_impl *w = calloc(1, sizeof *w);
    if (!w) return aio_fail(err, AIO_ENOMEM, "out of memory");
    w->src = src;
    w->kind = kind;
    w->block_align = block_align;
    w->data_off = data_off;
    w->frames = data_bytes / block_align;
    static const char *names[] = {"pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64"};
    f->be = &WAV;
    f->impl = w;
    f->info.frames = w->frames;
    f->info.sample_rate = (int)rate;
    f->info.channels = channels;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, names[kind]);
    aio_set_str(f->info.container, sizeof f->info.container, w64 ? "w64" : "wav");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

static void put16(unsigned char **p, uint16_t v) {
    (*p)[0] = (unsigned char)v;
    (*p)[1] = (unsigned char)(v >> 8);
    *p += 2;
}
static void put32(unsigned char **p, uint32_t v) { put16(p, (uint16_t)v); put16(p, (uint16_t)(v >> 16)); }
static void put64(unsigned char **p, uint64_t v) { put32(p, (uint32_t)v); put32(p, (uint32_t)(v >> 32)); }
static void put4(unsigned char **p, const char *s) { memcpy(*p, s, 4); *p += 4; }
static void put_w64_id(unsigned char **p, const char *s) {
    put4(p, s);
    memcpy(*p, W64_TAIL, 12);
    *p += 12;
}

/* The fmt chunk body: plain PCM/float for <= 2 channels at 8/16/32 bit, EXTENSIBLE above. */
static int fmt_body(unsigned char *b, int channels, int rate, int bytes, int is_float) {
    static const uint32_t masks[] = {0, 0x4, 0x3, 0x7, 0x33, 0x37, 0x3F, 0x70F, 0x63F};
    static const unsigned char guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                                0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    int ext = channels > 2 || bytes == 3;
    int len = ext ? 40 : is_float ? 18 : 16;
    unsigned char *p = b;
    put16(&p, ext ? 0xFFFE : is_float ? 3 : 1);
    put16(&p, (uint16_t)channels);
    put32(&p, (uint32_t)rate);
    put32(&p, (uint32_t)rate * (uint32_t)(channels * bytes));
    put16(&p, (uint16_t)(channels * bytes));
    put16(&p, (uint16_t)(bytes * 8));
    if (len >= 18) put16(&p, (uint16_t)(len - 18));
    if (ext) {
        put16(&p, (uint16_t)(bytes * 8));
        put32(&p, channels <= 8 ? masks[channels] : 0);
        put16(&p, is_float ? 3 : 1);
        memcpy(p, guid_tail, 14);
    }
    return len;
}

/* RIFF (RF64 when the sizes do not fit 32 bits) header up to the data bytes. */
static size_t wav_header(unsigned char *h, int64_t frames, int channels, int rate, int bytes,
                         int is_float) {
    unsigned char fmt[40];
    int fmt_len = fmt_body(fmt, channels, rate, bytes, is_float);
    uint64_t data = (uint64_t)frames * (uint64_t)channels * (uint64_t)bytes;
    uint64_t riff = 4 + (8 + (uint64_t)fmt_len) + (is_float ? 12 : 0) + 8 + data + (data & 1);
    int rf64 = riff + 36 > 0xFFFFFFFFull;
    if (rf64) riff += 36;
    unsigned char *p = h;
    put4(&p, rf64 ? "RF64" : "RIFF");
    put32(&p, rf64 ? 0xFFFFFFFF : (uint32_t)riff);
    put4(&p, "WAVE");
    if (rf64) {
        put4(&p, "ds64");
        put32(&p, 28);
        put64(&p, riff);
        put64(&p, data);
        put64(&p, (uint64_t)frames);
        put32(&p, 0);
    }
    put4(&p, "fmt ");
    put32(&p, (uint32_t)fmt_len);
    memcpy(p, fmt, (size_t)fmt_len);
    p += fmt_len;
    if (is_float) {
        put4(&p, "fact");
        put32(&p, 4);
        put32(&p, frames > 0xFFFFFFFF ? 0xFFFFFFFF : (uint32_t)frames);
    }
    put4(&p, "data");
    put32(&p, rf64 ? 0xFFFFFFFF : (uint32_t)data);
    return (size_t)(p - h);
}

/* Sony Wave64 header: GUID chunk ids, 64-bit sizes including the 24-byte chunk headers. */
static size_t w64_header(unsigned char *h, int64_t frames, int channels, int rate, int bytes,
                         int is_float) {
    unsigned char fmt[40];
    int fmt_len = fmt_body(fmt, channels, rate, bytes, is_float);
    uint64_t fmt_ck = (uint64_t)(24 + fmt_len + 7) / 8 * 8;
    uint64_t data = (uint64_t)frames * (uint64_t)channels * (uint64_t)bytes;
    uint64_t total = 40 + fmt_ck + 24 + (data + 7) / 8 * 8;
    unsigned char *p = h;
    memcpy(p, W64_RIFF, 16);
    p += 16;
    put64(&p, total);
    put_w64_id(&p, "wave");
    put_w64_id(&p, "fmt ");
    put64(&p, 24 + (uint64_t)fmt_len);
    memcpy(p, fmt, (size_t)fmt_len);
    p += fmt_len;
    while ((p - h) % 8) *p++ = 0;
    put_w64_id(&p, "data");
    put64(&p, 24 + data);
    return (size_t)(p - h);
}

/* Converts frames [i0, i0+n) of the strided input into the file's sample format at o. */
static unsigned char *encode_block(const aio_audio *a, int64_t i0, int64_t n, int bytes,
                                   unsigned char *o) {
    int ch = a->channels;
    if (a->frame_stride == ch && a->chan_stride == 1 && bytes != 3 && bytes != 1) {
        const float *src = a->data + i0 * ch; /* contiguous: flat loops the compiler vectorises */
        int64_t m = n * ch;
        if (bytes == 4) {
            if (a->clip)
                aio_clip_block(src, (float *)(void *)o, m);
            else
                memcpy(o, src, (size_t)m * 4);
        } else {
            int16_t *dst = (int16_t *)(void *)o;
            for (int64_t k = 0; k < m; k++)
                dst[k] = (int16_t)aio_quantize(src[k], 32768.0f, -32768, 32767);
        }
        return o + m * bytes;
    }
    for (int64_t i = i0; i < i0 + n; i++) {
        const float *row = a->data + i * a->frame_stride;
        for (int c = 0; c < ch; c++) {
            float x = row[c * a->chan_stride];
            if (bytes == 4) {
                float y = a->clip ? aio_clip(x) : x;
                memcpy(o, &y, 4);
            } else if (bytes == 2) {
                int16_t v = (int16_t)aio_quantize(x, 32768.0f, -32768, 32767);
                memcpy(o, &v, 2);
            } else if (bytes == 3) {
                int32_t v = aio_quantize(x, 8388608.0f, -8388608, 8388607);
                o[0] = (unsigned char)v;
                o[1] = (unsigned char)(v >> 8);
                o[2] = (unsigned char)(v >> 16);
            } else {
                *o = (unsigned char)(aio_quantize(x, 128.0f, -128, 127) + 128);
            }
            o += bytes;
        }
    }
    return o;
}

int aio_wav_save(const char *path, const char *container, unsigned char **mem,
                 int64_t *mem_size, const aio_audio *a, char *err) {
    static const int widths[] = {[AIO_ENC_FLOAT32] = 4, [AIO_ENC_PCM16] = 2,
                                 [AIO_ENC_PCM24] = 3, [AIO_ENC_PCM8] = 1};
    int enc = a->encoding;
    if (enc < 0 || enc > AIO_ENC_PCM8 || enc == AIO_ENC_ALAC)
        return aio_fail(err, AIO_EARG, "unsupported WAV encoding");
    if (a->channels > 65535) return aio_fail(err, AIO_EARG, "WAV holds at most 65535 channels");
    int bytes = widths[enc], w64 = strcmp(container, "w64") == 0;
    unsigned char hdr[160];
    size_t hlen = w64 ? w64_header(hdr, a->frames, a->channels, a->sample_rate, bytes, enc == 0)
                      : wav_header(hdr, a->frames, a->channels, a->sample_rate, bytes, enc == 0);
    int64_t data = a->frames * a->channels * bytes;
    int64_t pad = w64 ? (8 - (data & 7)) & 7 : (data & 1);
    aio_sink out = {-1, NULL, 0, 0};
    int regular = 0;
    if (path) {
        /* The path is a fresh temporary file (renamed over the target by the caller), a file
           written in place, or a device/FIFO written through: no O_TRUNC, the file is cut to
           size at the end (a no-op for the fresh file), and only regular files are cut. */
        out.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (out.fd < 0) return aio_fail(err, AIO_EIO, "cannot open for writing: %s", strerror(errno));
        struct stat st; /* a device or FIFO is written through: no truncation to size */
        regular = fstat(out.fd, &st) == 0 && S_ISREG(st.st_mode);
        /* the blocks up front, as NumPy's tofile does: ext4 otherwise allocates them when the
           finished file is renamed over the target (auto_da_alloc), 3x the time of the write.
           A file system without fallocate just allocates as it writes. */
#ifdef __linux__
        if (regular) (void)fallocate(out.fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)(hlen + data + pad));
#endif
    } else {
        out.cap = (int64_t)hlen + data + pad; /* exact: one allocation */
        if (!(out.buf = malloc(out.cap ? (size_t)out.cap : 1)))
            return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    int rc = aio_sink_write(&out, hdr, hlen);
    int flat = a->frame_stride == a->channels && a->chan_stride == 1;
    /* audio already in [-1, 1] (the usual case) is written as it is, clip or not: one read
       to check, then one write, instead of clamping through a buffer */
    if (rc == 0 && enc == AIO_ENC_FLOAT32 && flat &&
        (!a->clip || !aio_needs_clip(a->data, a->frames * a->channels))) {
        rc = aio_sink_write(&out, a->data, (size_t)data); /* already the file's bytes */
    } else if (rc == 0) {
        unsigned char *buf = malloc(WAV_BUF_BYTES);
        int64_t per = WAV_BUF_BYTES / (bytes * a->channels);
        if (!buf || per < 1) rc = -1;
        for (int64_t i0 = 0; rc == 0 && i0 < a->frames; i0 += per) {
            int64_t n = a->frames - i0 < per ? a->frames - i0 : per;
            unsigned char *end = encode_block(a, i0, n, bytes, buf);
            rc = aio_sink_write(&out, buf, (size_t)(end - buf));
        }
        free(buf);
    }
    static const unsigned char zeros[8] = {0};
    if (rc == 0 && pad) rc = aio_sink_write(&out, zeros, (size_t)pad);
    if (rc == 0 && regular && ftruncate(out.fd, (off_t)((int64_t)hlen + data + pad)) != 0) rc = -1;
    int saved_errno = errno;
    if (path && close(out.fd) != 0 && rc == 0) rc = -1, saved_errno = errno;
    if (rc != 0) { /* the caller owns the path (a temporary file it removes, or a device) */
        free(out.buf);
        return aio_fail(err, AIO_EIO, "write failed: %s", strerror(saved_errno));
    }
    if (!path) {
        *mem = out.buf;
        *mem_size = out.len;
    }
    return 0;
}
