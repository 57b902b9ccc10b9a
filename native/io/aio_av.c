/* libav (FFmpeg) backend: decodes every container and codec libav knows, encodes FLAC, MP3
   (LAME, with the Xing/LAME gapless tag), M4A (AAC, ALAC), AIFF and CAF. libav's log goes
   into our error text, never to stderr. */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio.h"

static _Thread_local char av_last[256];

static void av_log_to_buffer(void *avcl, int level, const char *fmt, va_list vl) {
    if (level > AV_LOG_ERROR) return;
    char line[256];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    char *at = strstr(line, " @ 0x"), *close = at ? strchr(at, ']') : NULL;
    if (close) memmove(at, close, strlen(close) + 1); /* "[flac @ 0x55..] x" -> "[flac] x" */
    if (n > 0) aio_set_str(av_last, sizeof av_last, line);
}

static pthread_once_t av_once = PTHREAD_ONCE_INIT;
static void av_setup(void) { av_log_set_callback(av_log_to_buffer); }

void aio_av_begin(void) {
    pthread_once(&av_once, av_setup);
    av_last[0] = 0;
}

/* "<what>: <libav error>[ (<last libav log line>)]" */
static int av_fail(char *err, int code, const char *what, int averr) {
    char e[AV_ERROR_MAX_STRING_SIZE] = {0};
    av_strerror(averr, e, sizeof e);
    if (av_last[0]) return aio_fail(err, code, "%s: %s (%s)", what, e, av_last);
    return aio_fail(err, code, "%s: %s", what, e);
}

/* Memory as libav I/O: reads (decoding) or a growing, seekable buffer (encoding). */
typedef struct {
    unsigned char *data;
    int64_t size, pos, cap;
} av_mem;

static int mem_read(void *op, uint8_t *buf, int n) {
    av_mem *m = op;
    int64_t left = m->size - m->pos;
    if (left <= 0) return AVERROR_EOF;
    if (n > left) n = (int)left;
    memcpy(buf, m->data + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

#if LIBAVFORMAT_VERSION_MAJOR >= 61
static int mem_write(void *op, const uint8_t *buf, int n) {
#else
static int mem_write(void *op, uint8_t *buf, int n) {
#endif
    av_mem *m = op;
    if (m->pos + n > m->cap) {
        int64_t cap = m->cap ? m->cap : 1 << 16;
        while (cap < m->pos + n) cap *= 2;
        unsigned char *d = realloc(m->data, (size_t)cap);
        if (!d) return AVERROR(ENOMEM);
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->pos, buf, (size_t)n);
    m->pos += n;
    if (m->pos > m->size) m->size = m->pos;
    return n;
}

static int64_t mem_seek(void *op, int64_t off, int whence) {
    av_mem *m = op;
    if (whence & AVSEEK_SIZE) return m->size;
    whence &= ~AVSEEK_FORCE;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    if (base + off < 0) return AVERROR(EINVAL);
    m->pos = base + off;
    return m->pos;
}

static AVIOContext *mem_avio(av_mem *m, int writable) {
    unsigned char *buf = av_malloc(1 << 16);
    if (!buf) return NULL;
    AVIOContext *io = avio_alloc_context(buf, 1 << 16, writable, m, writable ? NULL : mem_read,
                                         writable ? mem_write : NULL, mem_seek);
    if (!io) av_free(buf);
    return io;
}

static void free_avio(AVIOContext **io) {
    if (!*io) return;
    av_freep(&(*io)->buffer);
    avio_context_free(io);
}

typedef struct {
    AVFormatContext *fmt;
    AVIOContext *io; /* memory input only */
    av_mem mem;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frm;
    int si;
    int64_t last_pts; /* best-effort timestamp of the last decoded frame */
    int64_t data_start; /* the byte position after the header (PCM: where samples start) */
    int pcm_align;      /* bytes per frame of a PCM stream, else 0 */
    float *pend; /* decoded frames not yet handed out */
    int64_t pend_cap, pend_len, pend_pos;
    int demux_eof;
} av_impl;

static void av_teardown(av_impl *a) {
    avcodec_free_context(&a->dec);
    avformat_close_input(&a->fmt);
    free_avio(&a->io);
    av_packet_free(&a->pkt);
    av_frame_free(&a->frm);
    a->pend_len = a->pend_pos = 0;
    a->demux_eof = 0;
}

/* MP4, AIFF and CAF headers state codec, rate and channels; probing decodes frames to learn
   what is already known (a fifth of a short M4A read). Other containers (FLAC gained nothing),
   and any header that leaves something out, still get avformat_find_stream_info. */
static int header_is_complete(const AVFormatContext *fmt) {
    const char *name = fmt->iformat->name;
    if (strncmp(name, "mov,", 4) != 0 && strcmp(name, "aiff") != 0 && strcmp(name, "caf") != 0)
        return 0;
    int audio = 0;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVCodecParameters *p = fmt->streams[i]->codecpar;
        if (p->codec_type != AVMEDIA_TYPE_AUDIO) continue;
        if (p->codec_id == AV_CODEC_ID_NONE || p->sample_rate <= 0 || p->ch_layout.nb_channels <= 0)
            return 0;
        audio++;
    }
    return audio == 1;
}

static int av_setup_decoder(av_impl *a, aio_file *f, char *err) {
    if (f->mem) {
        a->mem = (av_mem){(unsigned char *)f->mem, f->mem_size, 0, 0};
        if (!(a->fmt = avformat_alloc_context()) || !(a->io = mem_avio(&a->mem, 0)))
            return aio_fail(err, AIO_ENOMEM, "out of memory");
        a->fmt->pb = a->io;
        a->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    }
    int r;
    if (f->mem) {
        r = avformat_open_input(&a->fmt, f->path, NULL, NULL);
    } else {
        char *url = aio_literal_url(f->path);
        AVDictionary *opts = NULL;
        av_dict_set(&opts, "protocol_whitelist", "file", 0);
        r = url ? avformat_open_input(&a->fmt, url, NULL, &opts) : AVERROR(ENOMEM);
        av_dict_free(&opts);
        free(url);
    }
    if (r < 0) return av_fail(err, AIO_EDECODE, "not a recognised audio file or corrupt", r);
    a->data_start = a->fmt->pb ? avio_tell(a->fmt->pb) : -1;
    if (!header_is_complete(a->fmt) && (r = avformat_find_stream_info(a->fmt, NULL)) < 0)
        return av_fail(err, AIO_EDECODE, "cannot read stream information", r);
    const AVCodec *codec = NULL;
    a->si = av_find_best_stream(a->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    int other_media = 0; /* video, image or subtitles: a real file that has no audio */
    for (unsigned i = 0; i < a->fmt->nb_streams; i++)
        other_media |= a->fmt->streams[i]->codecpar->codec_type != AVMEDIA_TYPE_AUDIO &&
                       a->fmt->streams[i]->codecpar->codec_type != AVMEDIA_TYPE_UNKNOWN;
    if (a->si == AVERROR_STREAM_NOT_FOUND && !other_media)
        return aio_fail(err, AIO_EDECODE, "not a recognised audio file or corrupt: no streams "
                        "found (probed as %s)", a->fmt->iformat->name);
    if (a->si == AVERROR_STREAM_NOT_FOUND)
        return aio_fail(err, AIO_EFORMAT, "no audio stream in this %s file", a->fmt->iformat->name);
    if (a->si < 0 || !codec) {
        AVStream *s = a->si >= 0 ? a->fmt->streams[a->si] : NULL;
        return aio_fail(err, AIO_EFORMAT, "no decoder for audio codec '%s'",
                        s ? avcodec_get_name(s->codecpar->codec_id) : "?");
    }
    for (unsigned i = 0; i < a->fmt->nb_streams; i++)
        if ((int)i != a->si) a->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVStream *st = a->fmt->streams[a->si];
    if (!(a->dec = avcodec_alloc_context3(codec)) || !(a->pkt = av_packet_alloc()) ||
        !(a->frm = av_frame_alloc()))
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    if ((r = avcodec_parameters_to_context(a->dec, st->codecpar)) < 0)
        return av_fail(err, AIO_EDECODE, "bad codec parameters", r);
    a->dec->pkt_timebase = st->time_base;
    a->dec->thread_count = 1; /* batch_load parallelises across files instead */
    if ((r = avcodec_open2(a->dec, codec, NULL)) < 0)
        return av_fail(err, AIO_EDECODE, "cannot open decoder", r);
    if (a->dec->ch_layout.nb_channels < 1 || a->dec->sample_rate < 1)
        return aio_fail(err, AIO_EDECODE, "stream has no channels or no sample rate");
    return 0;
}

/* Channel c of a decoded frame to interleaved float: one tight loop per sample format. */
#define CONVERT_LOOP(T, EXPR)                                                              \
    do {                                                                                   \
        const T *src = (const T *)(const void *)base;                                      \
        for (int64_t i = 0; i < n; i++) dst[i * ch] = (EXPR(src[i * step]));               \
    } while (0)
#define AS_U8(v) (((float)(v) - 128.0f) * (1.0f / 128.0f))
#define AS_S16(v) ((float)(v) * (1.0f / 32768.0f))
#define AS_S32(v) ((float)(v) * (1.0f / 2147483648.0f))
#define AS_S64(v) ((float)((double)(v) / 9223372036854775808.0))
#define AS_F32(v) (v)
#define AS_F64(v) ((float)(v))

static void convert_channel(const AVFrame *fr, enum AVSampleFormat packed, int planar, int ch,
                            int c, float *out) {
    const uint8_t *base = planar ? fr->extended_data[c] : fr->extended_data[0];
    int64_t n = fr->nb_samples, step = planar ? 1 : ch;
    float *dst = out + c;
    if (!planar) base += (size_t)c * (size_t)av_get_bytes_per_sample(packed);
    switch (packed) {
        case AV_SAMPLE_FMT_U8: CONVERT_LOOP(uint8_t, AS_U8); break;
        case AV_SAMPLE_FMT_S16: CONVERT_LOOP(int16_t, AS_S16); break;
        case AV_SAMPLE_FMT_S32: CONVERT_LOOP(int32_t, AS_S32); break;
        case AV_SAMPLE_FMT_S64: CONVERT_LOOP(int64_t, AS_S64); break;
        case AV_SAMPLE_FMT_FLT: CONVERT_LOOP(float, AS_F32); break;
        case AV_SAMPLE_FMT_DBL: CONVERT_LOOP(double, AS_F64); break;
        default: break;
    }
}

/* Converts the decoded frame into dst, or into the pending buffer when dst is NULL. */
static int frame_to(av_impl *a, int ch, float *dst, char *err) {
    AVFrame *fr = a->frm;
    if (fr->ch_layout.nb_channels != ch)
        return aio_fail(err, AIO_EDECODE, "channel count changes mid-stream (%d -> %d)", ch,
                        fr->ch_layout.nb_channels);
    int64_t n = fr->nb_samples;
    if (!dst && n > a->pend_cap) {
        float *p = realloc(a->pend, sizeof(float) * (size_t)(n * ch));
        if (!p) return aio_fail(err, AIO_ENOMEM, "out of memory");
        a->pend = p;
        a->pend_cap = n;
    }
    float *out = dst ? dst : a->pend;
    enum AVSampleFormat fmt = (enum AVSampleFormat)fr->format;
    int planar = av_sample_fmt_is_planar(fmt);
    enum AVSampleFormat packed = av_get_packed_sample_fmt(fmt);
    if (packed != AV_SAMPLE_FMT_U8 && packed != AV_SAMPLE_FMT_S16 && packed != AV_SAMPLE_FMT_S32 &&
        packed != AV_SAMPLE_FMT_S64 && packed != AV_SAMPLE_FMT_FLT && packed != AV_SAMPLE_FMT_DBL)
        return aio_fail(err, AIO_EDECODE, "unsupported decoded sample format %d", fmt);
    if (packed == AV_SAMPLE_FMT_FLT && !planar) {
        memcpy(out, fr->extended_data[0], sizeof(float) * (size_t)(n * ch));
    } else if (packed == AV_SAMPLE_FMT_S16 && !planar) {
        const int16_t *src = (const int16_t *)(const void *)fr->extended_data[0];
        for (int64_t i = 0; i < n * ch; i++) out[i] = AS_S16(src[i]);
    } else if (packed == AV_SAMPLE_FMT_S32 && !planar) {
        const int32_t *src = (const int32_t *)(const void *)fr->extended_data[0];
        for (int64_t i = 0; i < n * ch; i++) out[i] = AS_S32(src[i]);
    } else {
        for (int c = 0; c < ch; c++) convert_channel(fr, packed, planar, ch, c, out);
    }
    if (!dst) {
        a->pend_len = n;
        a->pend_pos = 0;
    }
    return 0;
}

/* Decodes the next frame: straight into dst when it holds at most room frames, else into the
   pending buffer. Returns frames written to dst, 0 when they went to pending (pend_len > 0) or
   at the end (pend_len == 0), < 0 on error. */
static int64_t av_next(av_impl *a, int ch, float *dst, int64_t room, char *err) {
    for (;;) {
        int r = avcodec_receive_frame(a->dec, a->frm);
        if (r == 0) {
            int64_t n = a->frm->nb_samples;
            int direct = dst && n <= room;
            a->last_pts = a->frm->best_effort_timestamp;
            int rc = n > 0 ? frame_to(a, ch, direct ? dst : NULL, err) : 0;
            av_frame_unref(a->frm);
            if (rc != 0) return rc;
            if (n == 0) continue;
            return direct ? n : 0;
        }
        if (r == AVERROR_EOF) {
            a->pend_len = a->pend_pos = 0;
            return 0;
        }
        if (r != AVERROR(EAGAIN)) return av_fail(err, AIO_EDECODE, "decoding failed", r);
        if (a->demux_eof) {
            a->pend_len = a->pend_pos = 0;
            return 0;
        }
        r = av_read_frame(a->fmt, a->pkt);
        if (r == AVERROR_EOF) {
            a->demux_eof = 1;
            avcodec_send_packet(a->dec, NULL);
            continue;
        }
        if (r < 0) return av_fail(err, AIO_EDECODE, "reading failed", r);
        if (a->pkt->stream_index == a->si) {
            /* a truncated PCM file ends in a partial frame: the whole frames before it count */
            if (a->pcm_align > 0) a->pkt->size -= a->pkt->size % a->pcm_align;
            r = a->pkt->size > 0 ? avcodec_send_packet(a->dec, a->pkt) : 0;
        }
        av_packet_unref(a->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) return av_fail(err, AIO_EDECODE, "decoding failed", r);
    }
}

static int64_t av_read(aio_file *f, float *out, int64_t frames, char *err) {
    av_impl *a = f->impl;
    int ch = f->info.channels;
    aio_av_begin();
    int64_t done = 0;
    while (done < frames) {
        if (a->pend_pos == a->pend_len) {
            int64_t r = av_next(a, ch, out ? out + done * ch : NULL, frames - done, err);
            if (r < 0) return r;
            if (r > 0) {
                done += r;
                continue;
            }
            if (a->pend_len == 0) break;
        }
        int64_t n = a->pend_len - a->pend_pos;
        if (n > frames - done) n = frames - done;
        if (out) memcpy(out + done * ch, a->pend + a->pend_pos * ch, sizeof(float) * (size_t)(n * ch));
        a->pend_pos += n;
        done += n;
    }
    return done;
}

/* Frames a decoder needs before the target to rebuild its state after a seek. Lossless codecs
   decode every frame on its own; lossy ones overlap frames (MDCT) or reach back (MP3's bit
   reservoir, Opus's 80 ms convergence). */
static int64_t preroll_frames(enum AVCodecID id, int rate) {
    if (id >= AV_CODEC_ID_PCM_S16LE && id < AV_CODEC_ID_ADPCM_IMA_QT) return 0;
    switch (id) {
        case AV_CODEC_ID_FLAC: case AV_CODEC_ID_ALAC: case AV_CODEC_ID_WAVPACK:
        case AV_CODEC_ID_TTA: case AV_CODEC_ID_APE: return 0;
        case AV_CODEC_ID_AAC: case AV_CODEC_ID_MP3: case AV_CODEC_ID_MP2: return 4096;
        case AV_CODEC_ID_OPUS: return rate / 10;
        default: return 8192;
    }
}

/* Seeks with the container's index, then decodes from the packet before the target and drops
   exactly the frames before it, using the first decoded frame's timestamp. Returns 0 when
   positioned, 1 when this file or position needs the slow path, < 0 on error. */
static int seek_by_timestamp(aio_file *f, av_impl *a, int64_t frame, char *err) {
    AVStream *st = a->fmt->streams[a->si];
    AVRational samples = {1, f->info.sample_rate};
    enum AVCodecID id = st->codecpar->codec_id;
    const char *fmt = a->fmt->iformat->name;
    /* containers whose packet timestamps count samples exactly; elsewhere (ADPCM in WAV, raw
       streams) timestamps are estimated from byte positions */
    int exact_ts = strcmp(fmt, "flac") == 0 || strncmp(fmt, "mov,", 4) == 0 ||
                   strcmp(fmt, "ogg") == 0 || strncmp(fmt, "matroska", 8) == 0 ||
                   (id >= AV_CODEC_ID_PCM_S16LE && id < AV_CODEC_ID_ADPCM_IMA_QT);
    if (!exact_ts) return 1;
    int64_t pre = preroll_frames(id, f->info.sample_rate);
    if (frame <= 2 * pre + 4096) return 1; /* near the start: decoding from there is as cheap */
    int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    int64_t ts = start + av_rescale_q(frame - pre, samples, st->time_base);
    if (av_seek_frame(a->fmt, a->si, ts, AVSEEK_FLAG_BACKWARD) < 0) return 1;
    avcodec_flush_buffers(a->dec);
    a->pend_len = a->pend_pos = 0;
    a->demux_eof = 0;
    a->last_pts = AV_NOPTS_VALUE;
    int64_t r = av_next(a, f->info.channels, NULL, 0, err);
    if (r < 0) return (int)r;
    if (a->pend_len == 0 || a->last_pts == AV_NOPTS_VALUE) return 1;
    int64_t pos = av_rescale_q(a->last_pts - start, st->time_base, samples);
    if (pos > frame - pre) return 1; /* landed after the preroll point: not trustworthy */
    while (pos + a->pend_len <= frame) {
        pos += a->pend_len;
        if ((r = av_next(a, f->info.channels, NULL, 0, err)) < 0) return (int)r;
        if (a->pend_len == 0) return 1; /* ran out before the target */
    }
    a->pend_pos = frame - pos;
    return 0;
}

/* Sample-accurate: by timestamp where the container allows, else start over and decode up to
   the frame. */
static int av_seek(aio_file *f, int64_t frame, char *err) {
    av_impl *a = f->impl;
    aio_av_begin();
    if (frame > 0 && a->fmt) {
        int r = seek_by_timestamp(f, a, frame, err);
        if (r <= 0) return r;
    }
    av_teardown(a);
    int rc = av_setup_decoder(a, f, err);
    if (rc != 0) return rc;
    f->pos = 0;
    int64_t n = av_read(f, NULL, frame, err);
    return n < 0 ? (int)n : 0;
}

static int av_count(aio_file *f, int64_t *frames, char *err) {
    int rc = av_seek(f, 0, err);
    if (rc != 0) return rc;
    int64_t n = av_read(f, NULL, INT64_MAX, err);
    if (n < 0) return (int)n;
    *frames = n;
    rc = av_seek(f, 0, err);
    return rc;
}

static void av_close(aio_file *f) {
    av_impl *a = f->impl;
    if (!a) return;
    av_teardown(a);
    free(a->pend);
    free(a);
}

static const aio_backend AV = {"libav", av_read, av_seek, av_count, av_close};

static const char *subtype_of(enum AVCodecID id) {
    switch (id) {
        case AV_CODEC_ID_PCM_U8: case AV_CODEC_ID_PCM_S8: return "pcm8";
        case AV_CODEC_ID_PCM_S16LE: case AV_CODEC_ID_PCM_S16BE: return "pcm16";
        case AV_CODEC_ID_PCM_S24LE: case AV_CODEC_ID_PCM_S24BE: return "pcm24";
        case AV_CODEC_ID_PCM_S32LE: case AV_CODEC_ID_PCM_S32BE: return "pcm32";
        case AV_CODEC_ID_PCM_F32LE: case AV_CODEC_ID_PCM_F32BE: return "float32";
        case AV_CODEC_ID_PCM_F64LE: case AV_CODEC_ID_PCM_F64BE: return "float64";
        case AV_CODEC_ID_PCM_MULAW: return "ulaw";
        case AV_CODEC_ID_PCM_ALAW: return "alaw";
        default: return avcodec_get_name(id);
    }
}

static const char *container_of(const char *iformat, const char *path) {
    if (strncmp(iformat, "mov,", 4) == 0) {
        size_t n = strlen(path);
        return n > 4 && strcasecmp(path + n - 4, ".mp4") == 0 ? "mp4" : "m4a";
    }
    return iformat;
}

/* Frame count the container states exactly, or -1. Packet-based guesses are not trusted. */
static int64_t declared_frames(av_impl *a, int64_t file_size) {
    AVStream *st = a->fmt->streams[a->si];
    const char *fmt = a->fmt->iformat->name;
    enum AVCodecID id = st->codecpar->codec_id;
    int pcm = id >= AV_CODEC_ID_PCM_S16LE && id < AV_CODEC_ID_ADPCM_IMA_QT;
    /* CAF and AIFF state packets x frames-per-packet for compressed codecs: too long */
    int exact = strcmp(fmt, "flac") == 0 || strncmp(fmt, "mov,", 4) == 0 ||
                (pcm && (strcmp(fmt, "aiff") == 0 || strcmp(fmt, "caf") == 0 ||
                         strcmp(fmt, "w64") == 0 || strcmp(fmt, "wav") == 0));
    if (!exact || st->duration == AV_NOPTS_VALUE || st->duration <= 0) return -1;
    int64_t n = av_rescale_q(st->duration, st->time_base, (AVRational){1, a->dec->sample_rate});
    /* a PCM header promising more samples than the file holds (truncated): count instead */
    int align = st->codecpar->block_align;
    if (pcm && align > 0 && a->data_start >= 0 && file_size >= 0 &&
        n > (file_size - a->data_start) / align)
        return -1;
    return n;
}

int aio_av_open(aio_file *f, char *err) {
    aio_av_begin();
    av_impl *a = calloc(1, sizeof *a);
    if (!a) return aio_fail(err, AIO_ENOMEM, "out of memory");
    int rc = av_setup_decoder(a, f, err);
    if (rc != 0) {
        av_teardown(a);
        free(a);
        return rc;
    }
    AVStream *st = a->fmt->streams[a->si];
    enum AVCodecID id = st->codecpar->codec_id;
    int bits = av_get_bits_per_sample(id), ch = st->codecpar->ch_layout.nb_channels;
    if (id >= AV_CODEC_ID_PCM_S16LE && id < AV_CODEC_ID_ADPCM_IMA_QT && bits % 8 == 0 &&
        st->codecpar->block_align == bits / 8 * ch) /* plain interleaved samples, no headers */
        a->pcm_align = st->codecpar->block_align;
    f->be = &AV;
    f->impl = a;
    f->info.sample_rate = a->dec->sample_rate;
    f->info.channels = a->dec->ch_layout.nb_channels;
    f->info.frames = declared_frames(a, f->size);
    aio_set_str(f->info.subtype, sizeof f->info.subtype, subtype_of(st->codecpar->codec_id));
    aio_set_str(f->info.container, sizeof f->info.container,
                container_of(a->fmt->iformat->name, f->path));
    return 0;
}

/* --- encoding -------------------------------------------------------------------------- */

typedef struct {
    const char *container, *muxer, *encoder;
    int encoding;
    enum AVSampleFormat sample_fmt;
    int bits; /* bits_per_raw_sample for 24-bit in 32-bit containers, else 0 */
} enc_spec;

static const enc_spec ENC[] = {
    {"flac", "flac", "flac", AIO_ENC_PCM16, AV_SAMPLE_FMT_S16, 0},
    {"flac", "flac", "flac", AIO_ENC_PCM24, AV_SAMPLE_FMT_S32, 24},
    {"flac", "flac", "flac", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_S32, 24},
    {"mp3", "mp3", "libmp3lame", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLTP, 0},
    {"m4a", "ipod", "aac", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLTP, 0},
    {"m4a", "ipod", "alac", AIO_ENC_ALAC, AV_SAMPLE_FMT_S32P, 24},
    {"m4a", "ipod", "alac", AIO_ENC_PCM16, AV_SAMPLE_FMT_S16P, 0},
    {"aiff", "aiff", "pcm_s16be", AIO_ENC_PCM16, AV_SAMPLE_FMT_S16, 0},
    {"aiff", "aiff", "pcm_s24be", AIO_ENC_PCM24, AV_SAMPLE_FMT_S32, 0},
    {"aiff", "aiff", "pcm_f32be", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLT, 0},
    {"caf", "caf", "pcm_s16le", AIO_ENC_PCM16, AV_SAMPLE_FMT_S16, 0},
    {"caf", "caf", "pcm_s24le", AIO_ENC_PCM24, AV_SAMPLE_FMT_S32, 0},
    {"caf", "caf", "pcm_f32le", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLT, 0},
    {"ogg", "ogg", "libvorbis", AIO_ENC_VORBIS, AV_SAMPLE_FMT_FLTP, 0},
    {"ogg", "ogg", "libopus", AIO_ENC_OPUS, AV_SAMPLE_FMT_FLT, 0},
    {"opus", "ogg", "libopus", AIO_ENC_OPUS, AV_SAMPLE_FMT_FLT, 0},
    {"wav", "wav", "pcm_mulaw", AIO_ENC_ULAW, AV_SAMPLE_FMT_S16, 0},
    {"wav", "wav", "pcm_alaw", AIO_ENC_ALAW, AV_SAMPLE_FMT_S16, 0},
    /* the streaming encoder's own (save() writes these WAVs and no ADTS through aio_wav) */
    {"wav", "wav", "pcm_f32le", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLT, 0},
    {"wav", "wav", "pcm_s16le", AIO_ENC_PCM16, AV_SAMPLE_FMT_S16, 0},
    {"adts", "adts", "aac", AIO_ENC_FLOAT32, AV_SAMPLE_FMT_FLTP, 0},
};

/* The layout our WAV writer declares for n channels (its channel mask), so a channel keeps its
   meaning across formats: 3.0, quad, 5.0, 5.1, 6.1 (side, as Vorbis and Opus define it), 7.1;
   libav's default beyond 8. */
static void aio_channel_layout(AVChannelLayout *layout, int n) {
    static const uint64_t masks[] = {0, AV_CH_LAYOUT_MONO, AV_CH_LAYOUT_STEREO,
                                     AV_CH_LAYOUT_SURROUND, AV_CH_LAYOUT_QUAD,
                                     AV_CH_LAYOUT_5POINT0_BACK, AV_CH_LAYOUT_5POINT1_BACK,
                                     AV_CH_LAYOUT_6POINT1, AV_CH_LAYOUT_7POINT1};
    if (n <= 8 && av_channel_layout_from_mask(layout, masks[n]) == 0) return;
    av_channel_layout_default(layout, n);
}

/* Writes frames [i0, i0+n) of the strided input into an encoder frame. */
static void fill_frame(AVFrame *fr, const aio_audio *a, int64_t i0, int64_t n) {
    enum AVSampleFormat fmt = (enum AVSampleFormat)fr->format;
    int planar = av_sample_fmt_is_planar(fmt), ch = a->channels;
    enum AVSampleFormat packed = av_get_packed_sample_fmt(fmt);
    for (int64_t i = 0; i < n; i++) {
        const float *row = a->data + (i0 + i) * a->frame_stride;
        for (int c = 0; c < ch; c++) {
            float x = row[c * a->chan_stride];
            int64_t k = planar ? i : i * ch + c;
            uint8_t *base = planar ? fr->extended_data[c] : fr->extended_data[0];
            if (packed == AV_SAMPLE_FMT_FLT)
                ((float *)(void *)base)[k] = a->clip ? aio_clip(x) : x;
            else if (packed == AV_SAMPLE_FMT_S16)
                ((int16_t *)(void *)base)[k] = (int16_t)aio_quantize(x, 32768.0f, -32768, 32767);
            else /* S32 holding 24-bit audio in the high bits */
                ((int32_t *)(void *)base)[k] = aio_quantize(x, 8388608.0f, -8388608, 8388607) * 256;
        }
    }
}

static int drain(AVFormatContext *oc, AVCodecContext *enc, AVStream *st, AVPacket *pkt, char *err) {
    for (;;) {
        int r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return av_fail(err, AIO_EIO, "encoding failed", r);
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(oc, pkt);
        if (r < 0) return av_fail(err, AIO_EIO, "writing failed", r);
    }
}

static AVCodecContext *open_encoder(AVFormatContext *oc, const enc_spec *spec, const AVCodec *codec,
                                    const aio_audio *a, char *err, int *rc) {
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    if (!enc) {
        *rc = aio_fail(err, AIO_ENOMEM, "out of memory");
        return NULL;
    }
    enc->sample_rate = a->sample_rate;
    enc->sample_fmt = spec->sample_fmt;
    aio_channel_layout(&enc->ch_layout, a->channels);
    enc->time_base = (AVRational){1, a->sample_rate};
    if (strcmp(spec->encoder, "libopus") == 0 && a->channels > 2)
        av_opt_set_int(enc->priv_data, "mapping_family", 1, 0); /* surround: Vorbis layouts */
    if (spec->bits) enc->bits_per_raw_sample = spec->bits;
    if (a->bitrate > 0) enc->bit_rate = a->bitrate;
    if (a->compression >= 0) enc->compression_level = a->compression;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int r = avcodec_open2(enc, codec, NULL);
    if (r < 0) {
        *rc = av_fail(err, AIO_EARG, "the encoder rejected these settings", r);
        avcodec_free_context(&enc);
    }
    return enc;
}

struct aio_writer {
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *fr;
    AVPacket *pkt;
    av_mem mem;          /* memory output */
    int to_memory, channels, sample_rate;
    int streaming;       /* memory output that cannot seek: bytes leave as they are muxed */
    int64_t frame_size, pts;
    float *staged;       /* interleaved frames waiting for a full encoder frame */
    int64_t staged_len;
};

static void writer_free(aio_writer *w, int failed) {
    if (!w) return;
    if (w->oc && w->oc->pb) {
        if (w->to_memory) {
            avio_flush(w->oc->pb);
            free_avio(&w->oc->pb);
        } else {
            avio_closep(&w->oc->pb);
        }
    }
    avcodec_free_context(&w->enc);
    avformat_free_context(w->oc);
    av_frame_free(&w->fr);
    av_packet_free(&w->pkt);
    if (failed) free(w->mem.data);
    free(w->staged);
    free(w);
}

/* Memory as a write-only, non-seekable libav output (the streaming encoder): muxers then
   write their headers once, with the sizes unknown, and never go back. */
static AVIOContext *stream_avio(av_mem *m) {
    unsigned char *buf = av_malloc(1 << 16);
    if (!buf) return NULL;
    AVIOContext *io = avio_alloc_context(buf, 1 << 16, 1, m, NULL, mem_write, NULL);
    if (!io) av_free(buf);
    else io->seekable = 0;
    return io;
}

static int writer_open(const char *path, const char *container, const aio_audio *a,
                       int streaming, aio_writer **out, char *err) {
    aio_av_begin();
    *out = NULL;
    const enc_spec *spec = NULL;
    for (size_t i = 0; i < sizeof ENC / sizeof ENC[0]; i++)
        if (strcmp(ENC[i].container, container) == 0 && ENC[i].encoding == a->encoding) spec = &ENC[i];
    if (!spec) return aio_fail(err, AIO_EARG, "unsupported encoding for .%s", container);
    const AVCodec *codec = avcodec_find_encoder_by_name(spec->encoder);
    if (!codec) return aio_fail(err, AIO_EFORMAT, "libav was built without the %s encoder", spec->encoder);
    aio_writer *w = calloc(1, sizeof *w);
    if (!w) return aio_fail(err, AIO_ENOMEM, "out of memory");
    w->to_memory = path == NULL;
    w->streaming = streaming && path == NULL;
    w->channels = a->channels;
    w->sample_rate = a->sample_rate;
    int rc = 0, r;
    if (!(w->fr = av_frame_alloc()) ||
        !(w->pkt = av_packet_alloc()) ||
        avformat_alloc_output_context2(&w->oc, NULL, spec->muxer, path) < 0 || !w->oc ||
        !(w->st = avformat_new_stream(w->oc, NULL))) {
        rc = aio_fail(err, AIO_ENOMEM, "cannot set up the %s muxer", spec->muxer);
        goto fail;
    }
    if (!(w->enc = open_encoder(w->oc, spec, codec, a, err, &rc))) goto fail;
    if ((r = avcodec_parameters_from_context(w->st->codecpar, w->enc)) < 0) {
        rc = av_fail(err, AIO_EIO, "cannot set stream parameters", r);
        goto fail;
    }
    w->st->time_base = w->enc->time_base;
    if (path) { /* a literal file name, never a URL (see aio_literal_url) */
        char *url = aio_literal_url(path);
        AVDictionary *opts = NULL;
        av_dict_set(&opts, "protocol_whitelist", "file", 0);
        r = url ? avio_open2(&w->oc->pb, url, AVIO_FLAG_WRITE, NULL, &opts) : AVERROR(ENOMEM);
        av_dict_free(&opts);
        free(url);
    } else {
        w->oc->pb = w->streaming ? stream_avio(&w->mem) : mem_avio(&w->mem, 1);
        w->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
        r = w->oc->pb ? 0 : AVERROR(ENOMEM);
    }
    if (r < 0) {
        w->oc->pb = NULL;
        rc = av_fail(err, AIO_EIO, "cannot open for writing", r);
        goto fail;
    }
    /* MP4 edit lists count in the movie timescale (ms by default): use the sample rate so
       the decoded length after priming removal is exact */
    if (strcmp(container, "m4a") == 0)
        av_opt_set_int(w->oc->priv_data, "movie_timescale", a->sample_rate, 0);
    /* Ogg pages span 1 s by default, all of it held in memory: 100 ms keeps an interrupted
       stream's loss small */
    if (strcmp(spec->muxer, "ogg") == 0) av_opt_set_int(w->oc->priv_data, "page_duration", 100000, 0);
    if (w->streaming && strcmp(spec->muxer, "wav") == 0)
        w->oc->flags |= AVFMT_FLAG_BITEXACT; /* no LIST/INFO chunk before the samples */
    if ((r = avformat_write_header(w->oc, NULL)) < 0) {
        rc = av_fail(err, AIO_EIO, "cannot write the header", r);
        goto fail;
    }
    /* PCM codecs take any frame count: a stream hands its bytes on after 256 frames */
    w->frame_size = w->enc->frame_size > 0 ? w->enc->frame_size : w->streaming ? 256 : 4096;
    w->staged = malloc(sizeof(float) * (size_t)(w->frame_size * a->channels));
    if (!w->staged) {
        rc = aio_fail(err, AIO_ENOMEM, "out of memory");
        goto fail;
    }
    *out = w;
    return 0;
fail:
    writer_free(w, 1);
    return rc;
}

/* Encodes n interleaved frames from w->staged (n <= frame_size; smaller only at the end). */
static int writer_encode(aio_writer *w, int64_t n, char *err) {
    AVFrame *fr = w->fr;
    fr->nb_samples = (int)n;
    fr->format = w->enc->sample_fmt;
    fr->sample_rate = w->sample_rate;
    if (av_channel_layout_copy(&fr->ch_layout, &w->enc->ch_layout) < 0 || av_frame_get_buffer(fr, 0) < 0)
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    aio_audio staged = {w->staged, n, w->channels, 1, w->channels, w->sample_rate, 0, 0, 0, -1};
    fill_frame(fr, &staged, 0, n);
    fr->pts = w->pts;
    w->pts += n;
    int r = avcodec_send_frame(w->enc, fr);
    av_frame_unref(fr);
    if (r < 0) return av_fail(err, AIO_EIO, "encoding failed", r);
    return drain(w->oc, w->enc, w->st, w->pkt, err);
}

static int writer_write(aio_writer *w, const aio_audio *a, char *err) {
    aio_av_begin();
    int ch = w->channels;
    for (int64_t i = 0; i < a->frames;) {
        int64_t n = w->frame_size - w->staged_len;
        if (n > a->frames - i) n = a->frames - i;
        for (int64_t k = 0; k < n; k++) { /* clip here: fill_frame sees clip = 0 */
            const float *row = a->data + (i + k) * a->frame_stride;
            float *dst = w->staged + (w->staged_len + k) * ch;
            for (int c = 0; c < ch; c++) dst[c] = a->clip ? aio_clip(row[c * a->chan_stride]) : row[c * a->chan_stride];
        }
        w->staged_len += n;
        i += n;
        if (w->staged_len == w->frame_size) {
            int rc = writer_encode(w, w->staged_len, err);
            if (rc != 0) return rc;
            w->staged_len = 0;
        }
    }
    if (!w->to_memory) avio_flush(w->oc->pb); /* on disk now: survives a crash of the process */
    return 0;
}

static int writer_finish(aio_writer *w, char *err) {
    aio_av_begin();
    int rc = w->staged_len > 0 ? writer_encode(w, w->staged_len, err) : 0, r;
    w->staged_len = 0;
    if (rc == 0) {
        avcodec_send_frame(w->enc, NULL);
        rc = drain(w->oc, w->enc, w->st, w->pkt, err);
    }
    if (rc == 0 && (r = av_write_trailer(w->oc)) < 0) rc = av_fail(err, AIO_EIO, "cannot finish the file", r);
    return rc;
}

AIO_API int aio_writer_open(const char *path, const char *container, int channels,
                            int sample_rate, int encoding, int bitrate, int compression,
                            aio_writer **out, char *err) {
    if (channels < 1 || sample_rate < 1) return aio_fail(err, AIO_EARG, "invalid channels or rate");
    aio_audio a = {NULL, 0, channels, 1, channels, sample_rate, encoding, bitrate, 0, compression};
    return writer_open(path, container, &a, 0, out, err);
}

AIO_API int aio_writer_write(aio_writer *w, const float *data, int64_t frames, int64_t frame_stride,
                             int64_t chan_stride, int clip, char *err) {
    aio_audio a = {data, frames, frame_stride, chan_stride, w->channels, w->sample_rate, 0, 0, clip, -1};
    return writer_write(w, &a, err);
}

AIO_API int aio_writer_close(aio_writer *w, char *err) {
    if (!w) return 0;
    int rc = writer_finish(w, err);
    writer_free(w, rc != 0);
    return rc;
}

int aio_av_save(const char *path, const char *container, unsigned char **mem,
                int64_t *mem_size, const aio_audio *a, char *err) {
    aio_writer *w = NULL;
    int rc = writer_open(path, container, a, 0, &w, err);
    if (rc != 0) return rc;
    if ((rc = writer_write(w, a, err)) == 0) rc = writer_finish(w, err);
    if (rc == 0 && !path) {
        *mem = w->mem.data;
        *mem_size = w->mem.size;
        w->mem.data = NULL;
    }
    writer_free(w, rc != 0);
    return rc;
}

/* --- the streaming encoder: one muxer per stream, its bytes drained as they come -------- */

AIO_API int aio_encoder_open(const char *container, int channels, int sample_rate, int encoding,
                             int bitrate, int compression, aio_writer **out, char *err) {
    if (!container || !out) return aio_fail(err, AIO_EARG, "no container or output");
    if (channels < 1 || sample_rate < 1) return aio_fail(err, AIO_EARG, "invalid channels or rate");
    aio_audio a = {NULL, 0, channels, 1, channels, sample_rate, encoding, bitrate, 0, compression};
    int rc = writer_open(NULL, container, &a, 1, out, err);
    if (rc == 0) avio_flush((*out)->oc->pb); /* the header is ready to take */
    return rc;
}

AIO_API int aio_encoder_write(aio_writer *w, const float *data, int64_t frames,
                              int64_t frame_stride, int64_t chan_stride, int clip, char *err) {
    if (!w || !w->streaming) return aio_fail(err, AIO_EARG, "not an open encoder");
    if (frames < 0 || (frames > 0 && !data)) return aio_fail(err, AIO_EARG, "invalid frames");
    aio_audio a = {data, frames, frame_stride, chan_stride, w->channels, w->sample_rate, 0, 0, clip, -1};
    int rc = writer_write(w, &a, err);
    if (rc == 0) avio_flush(w->oc->pb);
    return rc;
}

AIO_API int aio_encoder_finish(aio_writer *w, char *err) {
    if (!w || !w->streaming) return aio_fail(err, AIO_EARG, "not an open encoder");
    int rc = writer_finish(w, err);
    avio_flush(w->oc->pb);
    return rc;
}

AIO_API int64_t aio_encoder_pending(const aio_writer *w) { return w ? w->mem.size : 0; }

AIO_API int64_t aio_encoder_take(aio_writer *w, unsigned char *dst, int64_t cap) {
    if (!w || !dst || cap <= 0) return 0;
    int64_t n = w->mem.size < cap ? w->mem.size : cap;
    if (n <= 0) return 0;
    memcpy(dst, w->mem.data, (size_t)n);
    memmove(w->mem.data, w->mem.data + n, (size_t)(w->mem.size - n));
    w->mem.size -= n;
    w->mem.pos = w->mem.size;
    return n;
}

AIO_API void aio_encoder_free(aio_writer *w) { writer_free(w, 1); }

AIO_API const char *aio_version_info(void) {
    static char buf[256];
    snprintf(buf, sizeof buf, "libavformat %s; libavcodec %s; libavutil %s; %s",
             AV_STRINGIFY(LIBAVFORMAT_VERSION), AV_STRINGIFY(LIBAVCODEC_VERSION),
             AV_STRINGIFY(LIBAVUTIL_VERSION), aio_other_versions());
    return buf;
}
