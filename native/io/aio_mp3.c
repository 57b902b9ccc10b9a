/* MP3 (and MPEG layer 1/2) decoding with libmpg123: float output, gapless trimming from the
   LAME/Xing tag, exact length from a frame scan, sample-accurate seeks. */
#include <errno.h>
#include <fcntl.h>
#include <mpg123.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"

static pthread_once_t mpg_once = PTHREAD_ONCE_INIT;
static int mpg_init_rc = MPG123_ERR;
static void mpg_init(void) { mpg_init_rc = mpg123_init(); }

/* libmpg123's own file reader makes two read() calls per frame (header, then body): 4,700
   system calls to reach 60 s, most of a 1 s partial read. Its input comes through the reader
   callbacks below instead: memory input directly, files through a 64 KiB pread buffer. */
#define MP3_BUF (1 << 16)

typedef struct {
    mpg123_handle *mh;
    const unsigned char *mem; /* memory input, or NULL */
    int fd;                   /* file input */
    int64_t size, pos;
    unsigned char *buf;       /* file input: bytes [buf_off, buf_off + buf_len) of the file */
    int64_t buf_off, buf_len;
} mp3_impl;

static ssize_t pread_full(int fd, void *dst, size_t n, int64_t off) {
    ssize_t r;
    do r = pread(fd, dst, n, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r;
}

static mpg123_ssize_t src_read(void *h, void *dst, size_t n) {
    mp3_impl *m = h;
    if (m->mem) {
        int64_t left = m->size - m->pos;
        if ((int64_t)n > left) n = left > 0 ? (size_t)left : 0;
        memcpy(dst, m->mem + m->pos, n);
        m->pos += (int64_t)n;
        return (mpg123_ssize_t)n;
    }
    size_t done = 0;
    while (done < n) {
        int64_t at = m->pos - m->buf_off;
        if (at >= 0 && at < m->buf_len) {
            size_t k = (size_t)(m->buf_len - at) < n - done ? (size_t)(m->buf_len - at) : n - done;
            memcpy((unsigned char *)dst + done, m->buf + at, k);
            m->pos += (int64_t)k;
            done += k;
            continue;
        }
        ssize_t r = n - done >= MP3_BUF ? pread_full(m->fd, (unsigned char *)dst + done, n - done, m->pos)
                                        : pread_full(m->fd, m->buf, MP3_BUF, m->pos);
        if (r < 0) return done ? (mpg123_ssize_t)done : -1;
        if (r == 0) break;
        if (n - done >= MP3_BUF) {
            m->pos += r;
            done += (size_t)r;
        } else {
            m->buf_off = m->pos;
            m->buf_len = r;
        }
    }
    return (mpg123_ssize_t)done;
}

static off_t src_seek(void *h, off_t off, int whence) {
    mp3_impl *m = h;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    int64_t to = base + (int64_t)off;
    if (to < 0 || (m->mem && to > m->size)) return -1;
    m->pos = to;
    return (off_t)to;
}

static int64_t mp3_read(aio_file *f, float *out, int64_t frames, char *err) {
    mp3_impl *m = f->impl;
    int ch = f->info.channels;
    size_t want = (size_t)frames * (size_t)ch * sizeof(float), got_total = 0;
    while (got_total < want) {
        size_t done = 0;
        int rc = mpg123_read(m->mh, (unsigned char *)out + got_total, want - got_total, &done);
        got_total += done;
        if (rc == MPG123_DONE) break;
        if (rc == MPG123_NEW_FORMAT) {
            long rate;
            int c, enc;
            mpg123_getformat(m->mh, &rate, &c, &enc);
            if (rate != f->info.sample_rate || c != ch)
                return aio_fail(err, AIO_EDECODE, "MP3 stream changes format mid-file (%ld Hz, %d ch)",
                                rate, c);
            continue;
        }
        if (rc != MPG123_OK)
            return aio_fail(err, AIO_EDECODE, "libmpg123: %s", mpg123_strerror(m->mh));
    }
    return (int64_t)(got_total / (sizeof(float) * (size_t)ch));
}

static int mp3_seek(aio_file *f, int64_t frame, char *err) {
    mp3_impl *m = f->impl;
    off_t r = mpg123_seek(m->mh, (off_t)frame, SEEK_SET);
    if (r < 0) return aio_fail(err, AIO_EDECODE, "libmpg123 seek: %s", mpg123_strerror(m->mh));
    return 0;
}

static int mp3_count(aio_file *f, int64_t *frames, char *err) {
    off_t n = mpg123_length(((mp3_impl *)f->impl)->mh);
    if (n < 0) return aio_fail(err, AIO_EDECODE, "cannot determine MP3 length");
    *frames = (int64_t)n;
    return 0;
}

static void mp3_close(aio_file *f) {
    mp3_impl *m = f->impl;
    if (!m) return;
    mpg123_delete(m->mh);
    if (m->fd >= 0) close(m->fd);
    free(m->buf);
    free(m);
}

static const aio_backend MP3 = {"mp3", mp3_read, mp3_seek, mp3_count, mp3_close};

/* The first bytes of the file (at most cap). */
static size_t read_head(const mp3_impl *m, unsigned char *buf, size_t cap) {
    if (m->mem) {
        size_t n = m->size < (int64_t)cap ? (size_t)m->size : cap;
        memcpy(buf, m->mem, n);
        return n;
    }
    ssize_t n = pread_full(m->fd, buf, cap, 0);
    return n > 0 ? (size_t)n : 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* True when the Xing/Info tag of the first frame states more stream bytes than the file has
   after that frame's start: the file was cut short, and the tag's length is not what
   decoding gives. */
static int tag_exceeds_file(const mp3_impl *m) {
    unsigned char b[4096];
    size_t n = read_head(m, b, sizeof b), off = 0;
    if (n >= 10 && memcmp(b, "ID3", 3) == 0) /* ID3v2: syncsafe size, optional footer */
        off = 10 + ((size_t)(b[6] & 127) << 21 | (size_t)(b[7] & 127) << 14 |
                    (size_t)(b[8] & 127) << 7 | (b[9] & 127)) + (b[5] & 0x10 ? 10 : 0);
    if (off + 4 > n || b[off] != 0xFF || (b[off + 1] & 0xE0) != 0xE0) return 0;
    int mpeg1 = ((b[off + 1] >> 3) & 3) == 3, mono = (b[off + 3] >> 6) == 3;
    size_t tag = off + 4 + (mpeg1 ? (mono ? 17 : 32) : (mono ? 9 : 17));
    if (tag + 16 > n || (memcmp(b + tag, "Xing", 4) != 0 && memcmp(b + tag, "Info", 4) != 0))
        return 0;
    uint32_t flags = be32(b + tag + 4);
    if (!(flags & 2)) return 0;
    int64_t bytes = be32(b + tag + 8 + (flags & 1 ? 4 : 0));
    return m->size > 0 && bytes > m->size - (int64_t)off;
}

/* Takes src.fd (closed on every path); opens f->path itself when src has neither fd nor mem. */
int aio_mp3_open(aio_file *f, aio_src src, char *err) {
    if (!src.mem && src.fd < 0 && (src.fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0)
        return aio_fail(err, AIO_EIO, "cannot open file: %s", strerror(errno));
    pthread_once(&mpg_once, mpg_init);
    int e = 0;
    mpg123_handle *mh = mpg_init_rc == MPG123_OK ? mpg123_new(NULL, &e) : NULL;
    if (!mh) {
        if (src.fd >= 0) close(src.fd);
        if (mpg_init_rc != MPG123_OK)
            return aio_fail(err, AIO_EFORMAT, "libmpg123 failed to initialise");
        return aio_fail(err, AIO_ENOMEM, "libmpg123: %s", mpg123_plain_strerror(e));
    }
    mpg123_param(mh, MPG123_ADD_FLAGS, MPG123_QUIET | MPG123_GAPLESS | MPG123_FORCE_FLOAT, 0);
    mpg123_param(mh, MPG123_REMOVE_FLAGS, MPG123_AUTO_RESAMPLE, 0);
    mpg123_format_none(mh);
    const long *rates;
    size_t nrates;
    mpg123_rates(&rates, &nrates);
    for (size_t i = 0; i < nrates; i++)
        mpg123_format(mh, rates[i], MPG123_MONO | MPG123_STEREO, MPG123_ENC_FLOAT_32);
    long rate = 0;
    int ch = 0, enc = 0;
    long delay = -1;
    double unused = 0;
    mp3_impl *m = calloc(1, sizeof *m);
    if (m) {
        m->mem = src.mem;
        m->fd = src.fd;
        m->size = src.size;
    }
    if (!m || (!m->mem && !(m->buf = malloc(MP3_BUF)))) {
        mpg123_delete(mh);
        if (m) free(m);
        if (src.fd >= 0) close(src.fd);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    int opened = mpg123_replace_reader_handle(mh, src_read, src_seek, NULL) == MPG123_OK &&
                 mpg123_open_handle(mh, m) == MPG123_OK;
    int ok = opened && mpg123_getformat(mh, &rate, &ch, &enc) == MPG123_OK;
    /* A LAME/Info tag states frames, delay and padding: the length is exact without a scan,
       unless the file is shorter than the tag says */
    if (ok && (mpg123_getstate(mh, MPG123_ENC_DELAY, &delay, &unused) != MPG123_OK ||
               delay < 0 || tag_exceeds_file(m)))
        ok = mpg123_scan(mh) == MPG123_OK;
    if (!ok) {
        int code = mpg123_errcode(mh);
        aio_fail(err, AIO_EFORMAT, "libmpg123: %s",
                 code == MPG123_OK ? "no MPEG audio frames found" : mpg123_strerror(mh));
        mpg123_delete(mh);
        if (m->fd >= 0) close(m->fd);
        free(m->buf);
        free(m);
        return AIO_EFORMAT;
    }
    off_t len = mpg123_length(mh);
    m->mh = mh;
    f->be = &MP3;
    f->impl = m;
    f->info.frames = len >= 0 ? (int64_t)len : -1;
    f->info.sample_rate = (int)rate;
    f->info.channels = ch;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, "mp3");
    aio_set_str(f->info.container, sizeof f->info.container, "mp3");
    return 0;
}
