/* Band-limited resampling with libsoxr, streamed in blocks (one-shot over a whole signal is
   several times slower: cache misses), for the read pipeline and for resample(). */
#include <FLAC/format.h>
#include <mpg123.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>

#include "aio.h"

struct aio_resampler {
    soxr_t soxr;
    int channels;
};

static unsigned long recipe_for(int quality) {
    switch (quality) {
        case 0: return SOXR_QQ;  /* fastest: cubic interpolation, no anti-alias filter */
        case 1: return SOXR_LQ;  /* low: 16-bit, wide transition band */
        case 2: return SOXR_MQ;  /* medium: 16-bit */
        case 3: return SOXR_HQ;  /* default/high: 20-bit (librosa's default soxr_hq) */
        default: return SOXR_VHQ; /* best: 28-bit */
    }
}

aio_resampler *aio_resampler_new(int in_rate, int out_rate, int channels, int quality, char *err) {
    if (in_rate < 1 || out_rate < 1 || channels < 1) {
        aio_fail(err, AIO_EARG, "invalid resampling rates %d -> %d", in_rate, out_rate);
        return NULL;
    }
    aio_resampler *r = calloc(1, sizeof *r);
    if (!r) {
        aio_fail(err, AIO_ENOMEM, "out of memory");
        return NULL;
    }
    soxr_error_t e = NULL;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(recipe_for(quality), 0);
    soxr_runtime_spec_t rt = soxr_runtime_spec(1);
    r->soxr = soxr_create(in_rate, out_rate, (unsigned)channels, &e, &io, &q, &rt);
    r->channels = channels;
    if (!r->soxr || e) {
        aio_fail(err, AIO_EARG, "libsoxr: %s", e ? e : "cannot create resampler");
        soxr_delete(r->soxr);
        free(r);
        return NULL;
    }
    return r;
}

int64_t aio_resampler_process(aio_resampler *r, const float *in, int64_t in_frames,
                              int64_t *consumed, float *out, int64_t out_cap, char *err) {
    size_t idone = 0, odone = 0;
    soxr_error_t e = soxr_process(r->soxr, in, in ? (size_t)in_frames : 0, &idone, out,
                                  (size_t)out_cap, &odone);
    if (e) return aio_fail(err, AIO_EDECODE, "libsoxr: %s", e);
    *consumed = (int64_t)idone;
    return (int64_t)odone;
}

const char *aio_other_versions(void) {
    static char buf[128];
    snprintf(buf, sizeof buf, "libmpg123 API %d; libsoxr %s; libFLAC %s", MPG123_API_VERSION,
             soxr_version(), FLAC__VERSION_STRING);
    return buf;
}

void aio_resampler_free(aio_resampler *r) {
    if (!r) return;
    soxr_delete(r->soxr);
    free(r);
}

AIO_API int aio_resample(const float *in, int64_t in_frames, int channels, int in_rate,
                         int out_rate, int quality, float *out, int64_t out_frames, char *err) {
    aio_resampler *r = aio_resampler_new(in_rate, out_rate, channels, quality, err);
    if (!r) return AIO_EARG;
    const int64_t block = 16384;
    int64_t done = 0, pos = 0;
    int rc = 0;
    while (done < out_frames) {
        int64_t n_in = in_frames - pos < block ? in_frames - pos : block, consumed = 0;
        const float *src = n_in > 0 ? in + pos * channels : NULL;
        int64_t n = aio_resampler_process(r, src, n_in, &consumed, out + done * channels,
                                          out_frames - done, err);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        pos += consumed;
        done += n;
        if (!src && n == 0) break;
    }
    for (; done < out_frames && rc == 0; done++)
        for (int c = 0; c < channels; c++) out[done * channels + c] = 0.0f;
    aio_resampler_free(r);
    return rc;
}
