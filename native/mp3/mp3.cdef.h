/* The C API of fast_mp3_augment._native, exactly as cffi sees it (cdef text).
   Returns 0 (or a count >= 0) on success, a negative FMA_E* code with a message in err. */

#define FMA_ERRLEN 256
#define FMA_EARG -1
#define FMA_ENCODE -2
#define FMA_DECODE -3
#define FMA_ENOMEM -4

/* One pass over n floats: the largest |x| into *peak and the index of the first NaN or inf
   into *bad (-1 when every value is finite). */
void fma_scan(const float *x, int64_t n, float *peak, int64_t *bad);

/* Samples MPEG layer III frames hold at this rate (1152 from 32 kHz, else 576). */
int fma_frame_size(int sample_rate);

/* Length of the raw decoded stream for n input frames: the Info frame (when LAME writes one),
   LAME's 576-sample encoder delay, the input and LAME's padding. */
int64_t fma_raw_frames(int64_t n, int sample_rate, int info_frame);

/* Encodes `frames` x `channels` planar float samples (channel c at in + c*frames) with LAME
   (CBR bitrate_kbps as fma_layout reports it, quality 0-9, output rate = input rate, no bit
   reservoir, plain stereo)
   scaled by in_gain, decodes them with libmpg123, and writes planar output scaled by
   out_gain: with preserve_delay the raw stream (fma_raw_frames frames), else the `frames`
   frames aligned with the input. pipelined: encode on a second thread while decoding.
   info_frame: as fma_layout reports for these settings. */
int fma_roundtrip(const float *in, int64_t frames, int channels, int sample_rate,
                  int bitrate_kbps, int quality, float in_gain, float out_gain,
                  int preserve_delay, int pipelined, int info_frame, float *out, char *err);

/* What LAME will do with these settings: the CBR bitrate it really uses (it clamps ones the
   MPEG version cannot carry; stereo also goes up to the first bitrate whose frames leave
   4 bytes per channel and granule, 16 kbps at 22.05-24 kHz, as libmpg123 rejects granules
   squeezed into less) and whether it writes an Info frame (not when a frame is too small to
   hold one, e.g. 32 kbps at 48 kHz). Returns 0, or < 0 if LAME refuses. */
int fma_layout(int sample_rate, int channels, int bitrate_kbps, int *effective_kbps,
               int *info_frame);
