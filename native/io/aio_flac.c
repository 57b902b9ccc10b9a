/* Native FLAC with libFLAC: the length from STREAMINFO, sample-accurate seeks
   (FLAC__stream_decoder_seek_absolute: the seek table where there is one, else an interpolated
   bisection over frame headers) and a decoder about 1.5x faster than libavcodec's. Reading 1 s
   at 60 s took 0.7 ms here against 1.65 ms through libav, which probes 96 KB on open and then
   bisects by timestamps reading backwards from the end. Ogg FLAC and files whose STREAMINFO
   leaves the length out go to libav. */
#include <errno.h>
#include <FLAC/stream_decoder.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"

typedef struct {
    FLAC__StreamDecoder *dec;
    aio_src src;
    int64_t pos;       /* the byte position the read callback is at */
    int channels, bits;
    int64_t total;     /* frames, from STREAMINFO */
    unsigned rate;
    /* the block being handed out: the write callback converts straight into dst while the
       whole block fits there, else into pend */
    float *dst;
    int64_t room, wrote;
    float *pend;
    int64_t pend_cap, pend_len, pend_pos;
    int error;         /* an error the decoder reported (FLAC__StreamDecoderErrorStatus + 1) */
    int metadata_ok;
} flac_impl;

static FLAC__StreamDecoderReadStatus cb_read(const FLAC__StreamDecoder *d, FLAC__byte *buf,
                                             size_t *n, void *ud) {
    flac_impl *x = ud;
    int64_t left = x->src.size - x->pos;
    if (left <= 0 || *n == 0) {
        *n = 0;
        return FLAC__STREAM_DECODER_READ_STATUS_END_OF_STREAM;
    }
    size_t want = (int64_t)*n < left ? *n : (size_t)left;
    if (x->src.mem) {
        memcpy(buf, x->src.mem + x->pos, want);
    } else {
        ssize_t r;
        do r = pread(x->src.fd, buf, want, x->pos);
        while (r < 0 && errno == EINTR);
        if (r < 0) return FLAC__STREAM_DECODER_READ_STATUS_ABORT;
        if (r == 0) { /* the file shrank since it was opened */
            *n = 0;
            return FLAC__STREAM_DECODER_READ_STATUS_END_OF_STREAM;
        }
        want = (size_t)r;
    }
    x->pos += (int64_t)want;
    *n = want;
    return FLAC__STREAM_DECODER_READ_STATUS_CONTINUE;
}

static FLAC__StreamDecoderSeekStatus cb_seek(const FLAC__StreamDecoder *d, FLAC__uint64 to,
                                             void *ud) {
    flac_impl *x = ud;
    if ((int64_t)to < 0 || (int64_t)to > x->src.size) return FLAC__STREAM_DECODER_SEEK_STATUS_ERROR;
    x->pos = (int64_t)to;
    return FLAC__STREAM_DECODER_SEEK_STATUS_OK;
}

static FLAC__StreamDecoderTellStatus cb_tell(const FLAC__StreamDecoder *d, FLAC__uint64 *at,
                                             void *ud) {
    *at = (FLAC__uint64)((flac_impl *)ud)->pos;
    return FLAC__STREAM_DECODER_TELL_STATUS_OK;
}

static FLAC__StreamDecoderLengthStatus cb_length(const FLAC__StreamDecoder *d, FLAC__uint64 *n,
                                                 void *ud) {
    *n = (FLAC__uint64)((flac_impl *)ud)->src.size;
    return FLAC__STREAM_DECODER_LENGTH_STATUS_OK;
}

static FLAC__bool cb_eof(const FLAC__StreamDecoder *d, void *ud) {
    flac_impl *x = ud;
    return x->pos >= x->src.size;
}

static void cb_metadata(const FLAC__StreamDecoder *d, const FLAC__StreamMetadata *m, void *ud) {
    flac_impl *x = ud;
    if (m->type != FLAC__METADATA_TYPE_STREAMINFO) return;
    const FLAC__StreamMetadata_StreamInfo *s = &m->data.stream_info;
    x->channels = (int)s->channels;
    x->bits = (int)s->bits_per_sample;
    x->rate = s->sample_rate;
    x->total = (int64_t)s->total_samples;
    x->metadata_ok = 1;
}

static void cb_error(const FLAC__StreamDecoder *d, FLAC__StreamDecoderErrorStatus status,
                     void *ud) {
    flac_impl *x = ud;
    if (!x->error) x->error = (int)status + 1;
}

/* Block to interleaved float: n frames from the planar int32 channels, scaled by 2^-(bits-1)
   (what libav's s16/s32 output gives after its own conversion). */
static void convert(const FLAC__int32 *const b[], int ch, int64_t n, float scale, float *out) {
    if (ch == 2) {
        const FLAC__int32 *l = b[0], *r = b[1];
        for (int64_t i = 0; i < n; i++) {
            out[2 * i] = (float)l[i] * scale;
            out[2 * i + 1] = (float)r[i] * scale;
        }
        return;
    }
    for (int c = 0; c < ch; c++) {
        const FLAC__int32 *s = b[c];
        float *o = out + c;
        for (int64_t i = 0; i < n; i++) o[i * ch] = (float)s[i] * scale;
    }
}

static FLAC__StreamDecoderWriteStatus cb_write(const FLAC__StreamDecoder *d, const FLAC__Frame *fr,
                                               const FLAC__int32 *const b[], void *ud) {
    flac_impl *x = ud;
    int ch = x->channels;
    int64_t n = fr->header.blocksize;
    if ((int)fr->header.channels != ch || (int)fr->header.bits_per_sample != x->bits ||
        fr->header.sample_rate != x->rate) {
        if (!x->error) x->error = -1; /* the stream changes format mid-file */
        return FLAC__STREAM_DECODER_WRITE_STATUS_ABORT;
    }
    float scale = 1.0f / (float)(1ULL << (x->bits - 1));
    if (x->dst && n <= x->room) {
        convert(b, ch, n, scale, x->dst);
        x->wrote = n;
        return FLAC__STREAM_DECODER_WRITE_STATUS_CONTINUE;
    }
    if (n > x->pend_cap) {
        float *p = realloc(x->pend, sizeof(float) * (size_t)(n * ch));
        if (!p) {
            if (!x->error) x->error = -2;
            return FLAC__STREAM_DECODER_WRITE_STATUS_ABORT;
        }
        x->pend = p;
        x->pend_cap = n;
    }
    convert(b, ch, n, scale, x->pend);
    x->pend_len = n;
    x->pend_pos = 0;
    return FLAC__STREAM_DECODER_WRITE_STATUS_CONTINUE;
}

static const char *error_words(int status) {
    switch (status) {
        case FLAC__STREAM_DECODER_ERROR_STATUS_LOST_SYNC: return "lost sync (garbage between frames)";
        case FLAC__STREAM_DECODER_ERROR_STATUS_BAD_HEADER: return "bad frame header";
        case FLAC__STREAM_DECODER_ERROR_STATUS_FRAME_CRC_MISMATCH: return "frame CRC mismatch";
        case FLAC__STREAM_DECODER_ERROR_STATUS_UNPARSEABLE_STREAM: return "unparseable stream";
        default: return "bad metadata";
    }
}

static int flac_error(flac_impl *x, char *err) {
    if (x->error == -1)
        return aio_fail(err, AIO_EDECODE, "FLAC stream changes format mid-file");
    if (x->error == -2) return aio_fail(err, AIO_ENOMEM, "out of memory");
    if (x->error > 0) /* libFLAC reads ahead: near the end, a cut-short file looks like this */
        return aio_fail(err, AIO_EDECODE, "corrupt %sFLAC data: %s",
                        x->pos >= x->src.size ? "or truncated " : "", error_words(x->error - 1));
    FLAC__StreamDecoderState s = FLAC__stream_decoder_get_state(x->dec);
    if (s == FLAC__STREAM_DECODER_MEMORY_ALLOCATION_ERROR)
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    return aio_fail(err, AIO_EDECODE, "FLAC decoding failed (libFLAC: %s)",
                    FLAC__StreamDecoderStateString[s]);
}

/* The next block: into dst when it holds at most room frames (returns them), else into pend
   (returns 0 with pend_len > 0); 0 with pend_len == 0 at the end; < 0 on error. */
static int64_t next_block(flac_impl *x, float *dst, int64_t room, char *err) {
    x->dst = dst;
    x->room = room;
    x->wrote = 0;
    x->pend_len = x->pend_pos = 0;
    for (;;) {
        FLAC__bool ok = FLAC__stream_decoder_process_single(x->dec);
        x->dst = NULL;
        if (x->error) return flac_error(x, err);
        if (!ok) return flac_error(x, err);
        if (x->wrote > 0 || x->pend_len > 0) return x->wrote;
        FLAC__StreamDecoderState s = FLAC__stream_decoder_get_state(x->dec);
        if (s == FLAC__STREAM_DECODER_END_OF_STREAM) return 0;
        if (s == FLAC__STREAM_DECODER_ABORTED || s > FLAC__STREAM_DECODER_END_OF_STREAM)
            return flac_error(x, err);
        x->dst = dst; /* metadata or a skipped block: go on */
    }
}

static int64_t flac_read(aio_file *f, float *out, int64_t frames, char *err) {
    flac_impl *x = f->impl;
    int ch = x->channels;
    int64_t done = 0;
    while (done < frames) {
        if (x->pend_pos == x->pend_len) {
            int64_t r = next_block(x, out + done * ch, frames - done, err);
            if (r < 0) return r;
            if (r > 0) {
                done += r;
                continue;
            }
            if (x->pend_len == 0) break;
        }
        int64_t n = x->pend_len - x->pend_pos;
        if (n > frames - done) n = frames - done;
        memcpy(out + done * ch, x->pend + x->pend_pos * ch, sizeof(float) * (size_t)(n * ch));
        x->pend_pos += n;
        done += n;
    }
    return done;
}

static int flac_seek(aio_file *f, int64_t frame, char *err) {
    flac_impl *x = f->impl;
    x->pend_len = x->pend_pos = 0;
    if (frame >= x->total) { /* at or past the end: nothing more to read */
        if (!FLAC__stream_decoder_flush(x->dec)) return flac_error(x, err);
        x->pos = x->src.size;
        return 0;
    }
    /* libFLAC hands the block holding the target to the write callback, starting at the
       target; it lands in pend */
    x->dst = NULL;
    FLAC__bool ok = FLAC__stream_decoder_seek_absolute(x->dec, (FLAC__uint64)frame);
    if (x->error) return flac_error(x, err);
    if (!ok) {
        FLAC__stream_decoder_flush(x->dec);
        return aio_fail(err, AIO_EDECODE, "FLAC seek to frame %lld failed (corrupt file?)",
                        (long long)frame);
    }
    return 0;
}

static int flac_count(aio_file *f, int64_t *frames, char *err) {
    *frames = ((flac_impl *)f->impl)->total;
    return 0;
}

static void flac_close(aio_file *f) {
    flac_impl *x = f->impl;
    if (!x) return;
    if (x->dec) FLAC__stream_decoder_delete(x->dec);
    if (x->src.fd >= 0) close(x->src.fd);
    free(x->pend);
    free(x);
}

static const aio_backend FLAC_BE = {"libFLAC", flac_read, flac_seek, flac_count, flac_close};

int aio_is_native_flac(const unsigned char *head, size_t n) {
    return n >= 4 && memcmp(head, "fLaC", 4) == 0;
}

/* Takes src.fd (closed on every path). AIO_EFORMAT: leave it to libav. */
int aio_flac_open(aio_file *f, aio_src src, char *err) {
    flac_impl *x = calloc(1, sizeof *x);
    if (!x) {
        if (src.fd >= 0) close(src.fd);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    x->src = src;
    if (!(x->dec = FLAC__stream_decoder_new())) {
        flac_close(&(aio_file){.impl = x});
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    FLAC__stream_decoder_set_md5_checking(x->dec, false);
    int rc = FLAC__stream_decoder_init_stream(x->dec, cb_read, cb_seek, cb_tell, cb_length, cb_eof,
                                              cb_write, cb_metadata, cb_error, x);
    int ok = rc == FLAC__STREAM_DECODER_INIT_STATUS_OK &&
             FLAC__stream_decoder_process_until_end_of_metadata(x->dec) && !x->error &&
             x->metadata_ok;
    /* a stream without a stated length (total_samples 0, as an encoder that cannot seek back
       writes), or outside libFLAC's limits, goes to libav, which counts it */
    if (!ok || x->total <= 0 || x->channels < 1 || x->channels > 8 || x->bits < 4 ||
        x->bits > 32 || x->rate < 1) {
        flac_close(&(aio_file){.impl = x});
        return AIO_EFORMAT;
    }
    f->be = &FLAC_BE;
    f->impl = x;
    f->info.frames = x->total;
    f->info.sample_rate = (int)x->rate;
    f->info.channels = x->channels;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, "flac");
    aio_set_str(f->info.container, sizeof f->info.container, "flac");
    return 0;
}
