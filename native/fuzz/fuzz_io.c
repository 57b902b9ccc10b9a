/* libFuzzer target for the io shim: every input is a file in memory, read through the same
   calls load/info/stream make (open, count, a windowed read with mono mix-down and
   resampling). Built with clang -fsanitize=fuzzer,address,undefined by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aio.h"

static void read_all(aio_file *f, const aio_info *info, int64_t start, int64_t count, int mono,
                     int rate) {
    char err[AIO_ERRLEN];
    aio_pipe *p = NULL;
    if (aio_pipe_new(f, start, count, mono, rate, 3, &p, err) != 0) return;
    int ch = mono ? 1 : info->channels;
    float *buf = malloc(sizeof(float) * 4096 * (size_t)ch);
    int64_t total = 0;
    /* bounded: a hostile header may claim hours of audio */
    while (buf && total < 4 * 1024 * 1024) {
        int64_t n = aio_pipe_read(p, buf, 4096, ch, 1, err);
        if (n <= 0) break;
        total += n;
    }
    free(buf);
    aio_pipe_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    /* the first byte picks a name hint and the read options; the rest is the file */
    static const char *names[] = {"x.wav", "x.mp3", "x.flac", "x.m4a", "x.ogg", "x", "x.caf",
                                  "x.aiff"};
    uint8_t opt = data[0];
    char err[AIO_ERRLEN];
    aio_file *f = NULL;
    aio_info info;
    if (aio_open_memory(data + 1, (int64_t)size - 1, names[opt & 7], &f, &info, err) != 0)
        return 0;
    if (info.channels > 0 && info.channels <= 64 && info.sample_rate > 0 &&
        info.sample_rate <= 768000) {
        int64_t frames = 0;
        if ((opt & 8) && aio_count_frames(f, &frames, err) != 0) frames = -1;
        int64_t start = (opt & 16) ? info.sample_rate / 3 : 0;
        int64_t count = (opt & 32) ? info.sample_rate / 2 : -1;
        int rate = (opt & 64) ? 16000 : 0;
        read_all(f, &info, start, count, (opt & 128) ? 1 : 0, rate);
    }
    aio_close(f);
    return 0;
}
