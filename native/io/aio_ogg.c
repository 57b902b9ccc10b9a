/* Ogg Vorbis.

   A single-stream file (nearly all of them) is walked page by page here with libogg and its
   packets are decoded by libav's Vorbis decoder, which is ~1.8x faster than libvorbis. libav's
   Ogg demuxer is not used: it drops up to a block at the end of some files. Every packet's
   position comes from the granule position of the page it ends on (the last page's from the
   packet before, cut at its granule position; the first page's start trimmed as the spec
   says), so lengths and seeks are sample-exact. They agree with libvorbisfile's but where a
   first page asks for samples to be dropped (docs/io.md, "Ogg Vorbis").

   Chained or multiplexed files, and anything this walk does not expect, go to libvorbisfile
   (its exact length from the last granule position, sample-accurate seeks). Both give WAV
   channel order: libav's decoder reorders, and ORDER does it for libvorbisfile. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libavcodec/avcodec.h>
#include <ogg/ogg.h>
#include <unistd.h>
#include <vorbis/codec.h>
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

/* ---- a single Vorbis stream: our page walk, libav's decoder --------------------------- */

#define VB_READ 8192  /* bytes per read */
#define VB_MAXPK 256  /* packets that can complete on one page (255 lacing values) */

typedef struct {
    ogg_packet op;
    int64_t end; /* granule position just past its last output sample */
    int gap;     /* pages are missing before it */
} vb_packet;

typedef struct {
    aio_src src; /* owns src.fd */
    ogg_sync_state oy;
    ogg_stream_state os;
    vorbis_info vi; /* the headers, for each packet's block size */
    vorbis_comment vc;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frm;
    int serial, stream_ok, used;
    int long_bs; /* the long block size: a packet outputs at most half of it */
    int64_t audio_off;  /* the first page after the headers */
    int64_t first_gran; /* granule position of the first page an audio packet completes on */
    int64_t offset;     /* granule position of frame 0 (libvorbisfile's pcm offset) */
    int64_t end_gran;   /* granule position of the stream's last page */
    /* the walk */
    int64_t off;   /* where the next read into oy starts */
    int64_t cur;   /* where the next page oy gives starts */
    int64_t want;  /* granule position of the next sample read() delivers */
    int64_t limit; /* nothing at or past it is delivered (the last page's granule position) */
    int64_t last_end, last_pageno; /* the last placed packet's end, and its page's number */
    int last_bs, have_last, at_start, primed, eos;
    vb_packet pk[VB_MAXPK]; /* the packets completed on the current page */
    int pk_n, pk_i;
    int64_t fr_start; /* granule position of frm's first sample */
    int fr_i, fr_n;   /* frm's next sample to deliver, and its samples */
} vb_impl;

/* Reads up to VB_READ more bytes into oy: 1, 0 at the end of the data, < 0 on error. */
static int vb_fill(vb_impl *o, char *err) {
    int64_t left = o->src.size - o->off;
    if (left <= 0) return 0;
    size_t n = left < VB_READ ? (size_t)left : VB_READ;
    char *buf = ogg_sync_buffer(&o->oy, (long)n);
    if (!buf) return aio_fail(err, AIO_ENOMEM, "out of memory");
    if (aio_src_read_at(&o->src, buf, n, o->off) != 0)
        return aio_fail(err, AIO_EIO, "cannot read the file at byte %lld", (long long)o->off);
    ogg_sync_wrote(&o->oy, (long)n);
    o->off += (int64_t)n;
    return 1;
}

/* The next page (any stream) and where it starts: 1, 0 at the end, < 0 on error. Bytes that
   are not a page (CRC checked) are skipped. */
static int vb_page(vb_impl *o, ogg_page *og, int64_t *at, char *err) {
    for (;;) {
        long r = ogg_sync_pageseek(&o->oy, og);
        if (r > 0) {
            *at = o->cur;
            o->cur += r;
            return 1;
        }
        if (r < 0) {
            o->cur -= r;
            continue;
        }
        int rc = vb_fill(o, err);
        if (rc <= 0) return rc;
    }
}

/* Starts the walk over at byte `at`, with nothing decoded before it. */
static void vb_restart(vb_impl *o, int64_t at) {
    ogg_sync_reset(&o->oy);
    ogg_stream_reset_serialno(&o->os, o->serial);
    o->off = o->cur = at;
    o->pk_n = o->pk_i = o->fr_i = o->fr_n = 0;
    o->have_last = o->last_bs = o->at_start = o->primed = o->eos = 0;
}

/* Takes in one page of the stream and places the audio packets that complete on it: back
   from the page's granule position (in a stream as the spec has it, the same as forward from
   the packet before; in a damaged one, each page puts the positions right again), but
   forward from the packet before where that position leaps further than the page could
   explain. On the stream's first page that puts the first packet's end at granule - samples
   (what falls before 0 is dropped). The last page is placed forward from the packet before
   (back after a hole), and its granule position cuts the end; when it is also the first,
   the stream starts at 0 and the end is cut, as the spec says. */
static int vb_place(vb_impl *o, ogg_page *og, int64_t at, char *err) {
    if (ogg_stream_pagein(&o->os, og) != 0)
        return aio_fail(err, AIO_EDECODE, "corrupt Ogg page at byte %lld", (long long)at);
    int m = 0, bs = o->last_bs;
    int64_t sum = 0, n[VB_MAXPK];
    ogg_packet op;
    int r;
    int gap = 0;
    while ((r = ogg_stream_packetout(&o->os, &op)) != 0) {
        if (r < 0) { /* pages missing: the next packet only primes the decoder */
            gap = 1;
            bs = 0;
            continue;
        }
        long b = vorbis_packet_blocksize(&o->vi, &op);
        if (b <= 0) continue; /* not an audio packet: libvorbis skips it too */
        if (m == VB_MAXPK)
            return aio_fail(err, AIO_EDECODE, "corrupt Ogg page at byte %lld", (long long)at);
        n[m] = bs > 0 ? (bs + b) / 4 : 0;
        sum += n[m];
        bs = (int)b;
        o->pk[m].gap = gap;
        o->pk[m++].op = op;
        gap = 0;
    }
    int64_t g = ogg_page_granulepos(og), base;
    /* an end-of-stream flag counts on the stream's last page (a damaged one mid-stream would
       end the read early; libvorbisfile reads on too) */
    int eos = ogg_page_eos(og) && (o->end_gran < 0 || g >= o->end_gran);
    if (eos) o->eos = 1;
    if (eos && g >= 0 && g < o->limit) o->limit = g;
    o->pk_n = o->pk_i = 0;
    if (m == 0) return 0;
    if (o->have_last) {
        base = o->last_end; /* forward from the packet before */
        /* back from the granule position, unless this is the last page right after the
           packet before. A jump further ahead than this page and the pages missing before
           it (by sequence number, up to 64) could hold, 255 packets of half a long block
           each, is not believed: a crafted granule position would otherwise stream silence
           up to it. */
        if (g >= 0 && !(eos && !o->pk[0].gap)) {
            int64_t lost = (int64_t)ogg_page_pageno(og) - o->last_pageno - 1;
            lost = lost < 0 ? 0 : lost > 64 ? 64 : lost;
            int64_t back = g - sum, room = (1 + lost) * 255 * (o->long_bs / 2) + o->long_bs;
            if (back <= o->last_end + room) base = back;
        }
    } else if (g >= 0) {
        base = g - sum;
        if (o->at_start && base < 0 && eos) base = 0;
    } else { /* cannot be placed (no granule position where packets complete): dropped */
        if (o->at_start) return AIO_EFORMAT;
        o->last_bs = bs;
        o->primed = 0;
        return 0;
    }
    for (int i = 0; i < m; i++) o->pk[i].end = base += n[i];
    o->pk_n = m;
    o->last_end = base;
    o->last_pageno = ogg_page_pageno(og);
    o->last_bs = bs;
    o->have_last = 1;
    o->at_start = 0;
    return 0;
}

/* Decodes packet i when its output, or the next packet's, reaches `want` (each packet
   overlaps the one before, so the first one fed after a gap only primes the decoder). */
static int vb_decode(vb_impl *o, int i, char *err) {
    vb_packet *p = &o->pk[i];
    int needed = p->end + o->long_bs / 2 > o->want;
    if (p->gap || !needed) o->primed = 0;
    if (!needed) return 0;
    if (!o->primed && o->used) avcodec_flush_buffers(o->dec);
    o->used = 1;
    if (p->op.bytes > INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE ||
        av_new_packet(o->pkt, (int)p->op.bytes) < 0)
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    memcpy(o->pkt->data, p->op.packet, (size_t)p->op.bytes);
    int r = avcodec_send_packet(o->dec, o->pkt); /* libav's log was routed at open */
    av_packet_unref(o->pkt);
    if (r >= 0) r = avcodec_receive_frame(o->dec, o->frm);
    if (r == AVERROR(EAGAIN)) r = 0;
    if (r == AVERROR(ENOMEM)) return aio_fail(err, AIO_ENOMEM, "out of memory");
    if (r < 0 || !o->primed) { /* a broken packet is skipped, as libvorbis does */
        av_frame_unref(o->frm);
        o->primed = r >= 0;
        return 0;
    }
    if (o->frm->nb_samples > 0) {
        o->fr_start = p->end - o->frm->nb_samples;
        o->fr_i = 0;
        o->fr_n = o->frm->nb_samples;
    }
    return 0;
}

static int64_t vb_read(aio_file *f, float *out, int64_t frames, char *err) {
    vb_impl *o = f->impl;
    int ch = f->info.channels;
    int64_t done = 0;
    while (done < frames && o->want < o->limit) {
        if (o->fr_i < o->fr_n) {
            int64_t pos = o->fr_start + o->fr_i, room = frames - done, k;
            if (room > o->limit - o->want) room = o->limit - o->want;
            if (pos < o->want) { /* before the read position: skipped */
                k = o->want - pos;
                o->fr_i += k < o->fr_n - o->fr_i ? (int)k : o->fr_n - o->fr_i;
            } else if (pos > o->want) { /* after a packet that did not decode: silence */
                k = pos - o->want < room ? pos - o->want : room;
                memset(out + done * ch, 0, (size_t)(k * ch) * sizeof *out);
                o->want += k;
                done += k;
            } else {
                k = o->fr_n - o->fr_i < room ? o->fr_n - o->fr_i : room;
                for (int c = 0; c < ch; c++) {
                    const float *src = (const float *)o->frm->extended_data[c] + o->fr_i;
                    float *dst = out + done * ch + c;
                    for (int64_t j = 0; j < k; j++) dst[j * ch] = src[j];
                }
                o->fr_i += (int)k;
                o->want += k;
                done += k;
            }
            continue;
        }
        if (o->pk_i < o->pk_n) {
            int rc = vb_decode(o, o->pk_i++, err);
            if (rc < 0) return rc;
            continue;
        }
        if (o->eos) break;
        ogg_page og;
        int64_t at;
        int rc;
        while ((rc = vb_page(o, &og, &at, err)) > 0 && ogg_page_serialno(&og) != o->serial) {}
        if (rc < 0) return rc;
        if (rc == 0) break; /* a file cut short: what it holds */
        if ((rc = vb_place(o, &og, at, err)) < 0) return rc;
    }
    return done;
}

/* The first page of the stream with a granule position, at or after `from` and starting
   before `to`: 1 (*at, *gran), 0 if none, < 0 on error. */
static int vb_probe(vb_impl *o, int64_t from, int64_t to, int64_t *at, int64_t *gran,
                    char *err) {
    vb_restart(o, from);
    ogg_page og;
    int rc;
    while ((rc = vb_page(o, &og, at, err)) > 0 && *at < to) {
        *gran = ogg_page_granulepos(&og);
        if (ogg_page_serialno(&og) == o->serial && *gran >= 0) return 1;
    }
    return rc < 0 ? rc : 0;
}

/* Positions the walk on the last page whose granule position is at or before `want` (its
   last packet primes the decoder for the one whose output starts there): interpolation
   first, then bisection, then a scan of the last few KiB. */
static int vb_seek_page(vb_impl *o, int64_t want, int64_t *page, char *err) {
    int64_t lo = o->audio_off, hi = o->src.size, glo = o->first_gran, ghi = o->end_gran;
    int64_t best = -1, s, g;
    for (int step = 0; hi - lo > 2 * VB_READ; step++) {
        int64_t mid = lo + (hi - lo) / 2;
        /* the first guess aims a little early and the second a little late, to bracket the
           page between two probes; bisection after that */
        if (step < 2 && ghi > glo && want > glo)
            mid = lo + (int64_t)((double)(want - glo) / (double)(ghi - glo) * (double)(hi - lo)) +
                  (step == 0 ? -VB_READ : VB_READ / 2);
        if (mid < lo) mid = lo;
        if (mid > hi - VB_READ) mid = hi - VB_READ;
        int rc = vb_probe(o, mid, hi, &s, &g, err);
        if (rc < 0) return rc;
        if (rc > 0 && g <= want) {
            best = s;
            lo = s + 1;
            glo = g;
        } else {
            hi = mid;
            if (rc > 0) ghi = g;
        }
    }
    vb_restart(o, lo);
    ogg_page og;
    int rc;
    while ((rc = vb_page(o, &og, &s, err)) > 0 && s < hi) {
        g = ogg_page_granulepos(&og);
        if (ogg_page_serialno(&og) != o->serial || g < 0) continue;
        if (g > want) break;
        best = s;
    }
    if (rc < 0) return rc;
    *page = best;
    return 0;
}

static int vb_seek(aio_file *f, int64_t frame, char *err) {
    vb_impl *o = f->impl;
    int64_t want = frame + o->offset, page = -1;
    if (want < o->end_gran && want >= o->first_gran) {
        int rc = vb_seek_page(o, want, &page, err);
        if (rc < 0) return rc;
    }
    vb_restart(o, page >= 0 ? page : o->audio_off);
    o->at_start = page < 0;
    o->want = want;
    o->limit = o->end_gran;
    return 0;
}

static void vb_close(aio_file *f) {
    vb_impl *o = f->impl;
    if (!o) return;
    avcodec_free_context(&o->dec);
    av_packet_free(&o->pkt);
    av_frame_free(&o->frm);
    if (o->stream_ok) ogg_stream_clear(&o->os);
    ogg_sync_clear(&o->oy);
    vorbis_comment_clear(&o->vc);
    vorbis_info_clear(&o->vi);
    if (o->src.fd >= 0) close(o->src.fd);
    free(o);
}

static const aio_backend VB = {"vorbis", vb_read, vb_seek, ogg_count, vb_close};

/* The three headers: read by libvorbis (each packet's block size comes from them) and
   Xiph-laced into libav's extradata. AIO_EFORMAT when they are not one Vorbis stream's,
   laid out as the spec says (libvorbisfile takes the file then). */
static int vb_headers(vb_impl *o, unsigned char **extra, int *extra_n, char *err) {
    ogg_page og;
    ogg_packet op;
    int64_t at;
    int rc = vb_page(o, &og, &at, err), got = 0;
    if (rc <= 0 || !ogg_page_bos(&og)) return rc < 0 ? rc : AIO_EFORMAT;
    o->serial = ogg_page_serialno(&og);
    if (ogg_stream_init(&o->os, o->serial) != 0) return aio_fail(err, AIO_ENOMEM, "out of memory");
    o->stream_ok = 1;
    size_t cap = 0, len = 0, hlen[3] = {0};
    unsigned char *buf = NULL;
    int bad = 0;
    for (;;) {
        if (ogg_page_serialno(&og) != o->serial || ogg_stream_pagein(&o->os, &og) != 0)
            break; /* another stream's page among the headers: multiplexed */
        int pr;
        while (got < 3 && (pr = ogg_stream_packetout(&o->os, &op)) != 0) {
            if (pr < 0 || vorbis_synthesis_headerin(&o->vi, &o->vc, &op) != 0) {
                bad = 1;
                break;
            }
            if (len + (size_t)op.bytes > cap) {
                cap = (len + (size_t)op.bytes) * 2;
                unsigned char *nb = realloc(buf, cap);
                if (!nb) {
                    free(buf);
                    return aio_fail(err, AIO_ENOMEM, "out of memory");
                }
                buf = nb;
            }
            memcpy(buf + len, op.packet, (size_t)op.bytes);
            len += (size_t)op.bytes;
            hlen[got++] = (size_t)op.bytes;
        }
        if (got == 3 || bad || (rc = vb_page(o, &og, &at, err)) <= 0) break;
    }
    /* the setup header must end its page, and audio start on the next (og is only looked at
       when it holds the setup header: after a failed read its buffer may be gone) */
    int ok = got == 3 && ogg_stream_packetpeek(&o->os, NULL) == 0;
    if (ok) {
        int nseg = og.header[26];
        ok = nseg > 0 && og.header[27 + nseg - 1] != 255;
    }
    if (!ok) {
        free(buf);
        return rc < 0 ? rc : AIO_EFORMAT;
    }
    o->audio_off = o->cur;
    o->long_bs = vorbis_info_blocksize(&o->vi, 1);
    /* Xiph lacing: 2, then the first two lengths in 255s, then the three packets */
    size_t lace = hlen[0] / 255 + 1 + hlen[1] / 255 + 1;
    unsigned char *x = av_mallocz(1 + lace + len + AV_INPUT_BUFFER_PADDING_SIZE);
    if (!x) {
        free(buf);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    unsigned char *w = x;
    *w++ = 2;
    for (int k = 0; k < 2; k++) {
        for (size_t v = hlen[k]; ; v -= 255) {
            *w++ = (unsigned char)(v < 255 ? v : 255);
            if (v < 255) break;
        }
    }
    memcpy(w, buf, len);
    free(buf);
    *extra = x;
    *extra_n = (int)(1 + lace + len);
    return 0;
}

/* What the walk needs besides: the first page an audio packet completes on (its granule
   position, and frame 0's, the pcm offset as libvorbisfile computes it) and the last page's
   granule position. AIO_EFORMAT for a chained or multiplexed file, or one with no audio. */
static int vb_bounds(vb_impl *o, char *err) {
    /* the first page an audio packet completes on */
    ogg_page og;
    int64_t at;
    int rc;
    o->at_start = 1;
    o->limit = INT64_MAX;
    while ((rc = vb_page(o, &og, &at, err)) > 0) {
        if (ogg_page_serialno(&og) != o->serial) continue;
        if (vb_place(o, &og, at, err) < 0) return AIO_EFORMAT;
        if (o->pk_n > 0) break;
        if (o->eos) return AIO_EFORMAT;
    }
    if (rc <= 0) return rc < 0 ? rc : AIO_EFORMAT;
    o->first_gran = ogg_page_granulepos(&og);
    o->offset = o->pk[0].end > 0 ? o->pk[0].end : 0;
    /* the last page with a granule position, which must be this stream's (else chained) */
    for (int64_t win = 4 * VB_READ;; win *= 4) {
        int64_t from = o->src.size - win, last = -1;
        if (from < o->audio_off) from = o->audio_off;
        vb_restart(o, from);
        int last_ours = 0;
        while ((rc = vb_page(o, &og, &at, err)) > 0) {
            int ours = ogg_page_serialno(&og) == o->serial;
            if (ours && ogg_page_bos(&og)) return AIO_EFORMAT; /* a chained stream */
            if (ours && ogg_page_granulepos(&og) >= 0) last = ogg_page_granulepos(&og);
            last_ours = ours;
        }
        if (rc < 0) return rc;
        if (last >= 0 && !last_ours) return AIO_EFORMAT;
        if (last >= 0) {
            o->end_gran = last;
            break;
        }
        if (from == o->audio_off) return AIO_EFORMAT;
    }
    return o->end_gran >= o->offset && o->end_gran >= o->first_gran ? 0 : AIO_EFORMAT;
}

/* 0 with f set up, AIO_EFORMAT for libvorbisfile to try, or an error. Owns src.fd. */
static int vb_open(aio_file *f, aio_src src, char *err) {
    vb_impl *o = calloc(1, sizeof *o);
    if (!o) {
        if (src.fd >= 0) close(src.fd);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    o->src = src;
    o->end_gran = -1; /* not known until vb_bounds has read the last page */
    ogg_sync_init(&o->oy);
    vorbis_info_init(&o->vi);
    vorbis_comment_init(&o->vc);
    unsigned char *extra = NULL;
    int extra_n = 0, rc = vb_headers(o, &extra, &extra_n, err);
    if (rc == 0) rc = vb_bounds(o, err);
    const AVCodec *codec = rc == 0 ? avcodec_find_decoder(AV_CODEC_ID_VORBIS) : NULL;
    if (rc == 0 && !codec) rc = AIO_EFORMAT;
    if (rc == 0) {
        aio_av_begin();
        if (!(o->dec = avcodec_alloc_context3(codec)) || !(o->pkt = av_packet_alloc()) ||
            !(o->frm = av_frame_alloc())) {
            rc = aio_fail(err, AIO_ENOMEM, "out of memory");
        } else {
            o->dec->extradata = extra;
            o->dec->extradata_size = extra_n;
            extra = NULL; /* the context frees it */
            o->dec->sample_rate = (int)o->vi.rate;
            if (avcodec_open2(o->dec, codec, NULL) < 0 ||
                o->dec->sample_fmt != AV_SAMPLE_FMT_FLTP ||
                o->dec->ch_layout.nb_channels != o->vi.channels)
                rc = AIO_EFORMAT;
        }
    }
    av_free(extra);
    if (rc == 0 && (o->vi.channels < 1 || o->vi.rate < 1)) rc = AIO_EFORMAT;
    if (rc != 0) {
        vb_close(&(aio_file){.impl = o});
        return rc;
    }
    f->be = &VB;
    f->impl = o;
    f->info.frames = o->end_gran - o->offset;
    f->info.sample_rate = (int)o->vi.rate;
    f->info.channels = o->vi.channels;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, "vorbis");
    aio_set_str(f->info.container, sizeof f->info.container, "ogg");
    vb_restart(o, o->audio_off);
    o->at_start = 1;
    o->want = o->offset;
    o->limit = o->end_gran;
    return 0;
}

/* An Ogg stream whose first packet is a Vorbis identification header. */
int aio_is_ogg_vorbis(const unsigned char *head, size_t n) {
    if (n < 28 || memcmp(head, "OggS", 4) != 0) return 0;
    size_t at = 27 + (size_t)head[26];
    return n >= at + 7 && memcmp(head + at, "\x01vorbis", 7) == 0;
}

static int vf_open(aio_file *f, char *err) {
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
    /* libvorbisfile opens some chains (a short first link) positioned in the second link:
       a seek to 0 puts it back on the first */
    if (same && ov_streams(&o->vf) > 1) same = ov_pcm_seek(&o->vf, 0) == 0;
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

/* MLX_AUDIO_IO_VORBISFILE=1 sends every Ogg Vorbis file to libvorbisfile: the reference the
   fast path is tested against, and a way around it should a file ever need one. */
static int vorbisfile_asked(void) {
    const char *v = getenv("MLX_AUDIO_IO_VORBISFILE");
    return v && *v && strcmp(v, "0") != 0;
}

int aio_ogg_open(aio_file *f, aio_src src, char *err) {
    if (vorbisfile_asked()) {
        if (src.fd >= 0) close(src.fd);
        return vf_open(f, err);
    }
    if (src.fd < 0 && !src.mem) {
        src.fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0) return aio_fail(err, AIO_EIO, "cannot open file: %s", strerror(errno));
    }
    int rc = vb_open(f, src, err);
    return rc == AIO_EFORMAT ? vf_open(f, err) : rc;
}
