/* Ogg Vorbis with libvorbisfile: exact length from the last granule position, sample-accurate
   seeks (libav's Ogg demuxer drops up to a block at the end of some files). Channels are
   reordered from Vorbis order to WAV order, as libav's decoder does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vorbis/vorbisfile.h>

#include "aio.h"

#define OGG_BUF (1 << 16)

typedef struct {
    OggVorbis_File vf;
    FILE *fp;                  /* file input */
    char *vbuf;                /* its stdio buffer, freed after fclose */
    const unsigned char *mem;  /* memory input */
    int64_t size, pos;
} ogg_impl;

/* Vorbis channel j goes to WAV channel ORDER[ch-1][j] (Vorbis I spec, section 4.3.9). */
static const int ORDER[8][8] = {
    {0}, {0, 1}, {0, 2, 1}, {0, 1, 2, 3}, {0, 2, 1, 3, 4}, {0, 2, 1, 4, 5, 3},
    {0, 2, 1, 5, 6, 4, 3}, {0, 2, 1, 6, 7, 4, 5, 3},
};

static size_t mem_read(void *dst, size_t size, size_t n, void *src) {
    ogg_impl *o = src;
    int64_t want = (int64_t)(size * n), left = o->size - o->pos;
    if (want > left) want = left;
    memcpy(dst, o->mem + o->pos, (size_t)want);
    o->pos += want;
    return size ? (size_t)want / size : 0;
}

static int mem_seek(void *src, ogg_int64_t off, int whence) {
    ogg_impl *o = src;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? o->pos : o->size;
    if (base + off < 0 || base + off > o->size) return -1;
    o->pos = base + off;
    return 0;
}

static long mem_tell(void *src) { return (long)((ogg_impl *)src)->pos; }

static int file_seek(void *fp, ogg_int64_t off, int whence) { return fseeko(fp, (off_t)off, whence); }
static long file_tell(void *fp) { return (long)ftello(fp); }
static size_t file_read(void *dst, size_t size, size_t n, void *fp) { return fread(dst, size, n, fp); }

static int64_t ogg_read(aio_file *f, float *out, int64_t frames, char *err) {
    ogg_impl *o = f->impl;
    int ch = f->info.channels, map = ch <= 8;
    int64_t done = 0;
    while (done < frames) {
        float **pcm;
        int section = 0;
        int64_t want = frames - done > 4096 ? 4096 : frames - done;
        long n = ov_read_float(&o->vf, &pcm, (int)want, &section);
        if (n == 0) break;
        if (n < 0) return aio_fail(err, AIO_EDECODE, "corrupt Ogg Vorbis data (libvorbisfile %ld)", n);
        for (int j = 0; j < ch; j++) {
            float *dst = out + done * ch + (map ? ORDER[ch - 1][j] : j);
            for (long i = 0; i < n; i++) dst[i * ch] = pcm[j][i];
        }
        done += n;
    }
    return done;
}

static int ogg_seek(aio_file *f, int64_t frame, char *err) {
    int r = ov_pcm_seek(&((ogg_impl *)f->impl)->vf, frame);
    return r == 0 ? 0 : aio_fail(err, AIO_EDECODE, "Ogg Vorbis seek failed (libvorbisfile %d)", r);
}

static int ogg_count(aio_file *f, int64_t *frames, char *err) {
    *frames = f->info.frames;
    return 0;
}

static void ogg_close(aio_file *f) {
    ogg_impl *o = f->impl;
    if (!o) return;
    ov_clear(&o->vf); /* closes fp through the callbacks */
    free(o->vbuf);
    free(o);
}

static const aio_backend OGG = {"vorbisfile", ogg_read, ogg_seek, ogg_count, ogg_close};

/* An Ogg stream whose first packet is a Vorbis identification header. */
int aio_is_ogg_vorbis(const unsigned char *head, size_t n) {
    if (n < 28 || memcmp(head, "OggS", 4) != 0) return 0;
    size_t at = 27 + (size_t)head[26];
    return n >= at + 7 && memcmp(head + at, "\x01vorbis", 7) == 0;
}

int aio_ogg_open(aio_file *f, char *err) {
    ogg_impl *o = calloc(1, sizeof *o);
    if (!o) return aio_fail(err, AIO_ENOMEM, "out of memory");
    int r;
    if (f->mem) {
        o->mem = f->mem;
        o->size = f->mem_size;
        ov_callbacks cb = {mem_read, mem_seek, NULL, mem_tell};
        r = ov_open_callbacks(o, &o->vf, NULL, 0, cb);
    } else {
        if (!(o->fp = fopen(f->path, "rb"))) {
            free(o);
            return aio_fail(err, AIO_EIO, "cannot open file: %s", strerror(errno));
        }
        /* vorbisfile asks for 2-4 KiB at a time: a 64 KiB stdio buffer (glibc ignores the size
           of a buffer it allocates itself) turns 65 read calls for 1 s at 60 s into a few */
        if ((o->vbuf = malloc(OGG_BUF))) setvbuf(o->fp, o->vbuf, _IOFBF, OGG_BUF);
        ov_callbacks cb = {file_read, file_seek, (int (*)(void *))fclose, file_tell};
        r = ov_open_callbacks(o->fp, &o->vf, NULL, 0, cb);
        if (r != 0) fclose(o->fp); /* vbuf is freed below */
    }
    if (r != 0) {
        free(o->vbuf);
        free(o);
        return AIO_EFORMAT; /* let libav try, and word the error */
    }
    vorbis_info *vi = ov_info(&o->vf, -1);
    ogg_int64_t total = ov_pcm_total(&o->vf, -1);
    int same = vi != NULL && total >= 0;
    for (long i = 1; same && i < ov_streams(&o->vf); i++) {  /* chained streams must agree */
        vorbis_info *v = ov_info(&o->vf, (int)i);
        same = v && v->channels == vi->channels && v->rate == vi->rate;
    }
    if (!same || vi->channels < 1 || vi->rate < 1) {
        ov_clear(&o->vf);
        free(o->vbuf);
        free(o);
        return AIO_EFORMAT;
    }
    f->be = &OGG;
    f->impl = o;
    f->info.frames = (int64_t)total;
    f->info.sample_rate = (int)vi->rate;
    f->info.channels = vi->channels;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, "vorbis");
    aio_set_str(f->info.container, sizeof f->info.container, "ogg");
    return 0;
}
