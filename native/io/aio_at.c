/* macOS: AIFF, CAF and M4A (AAC, ALAC) through AudioToolbox's ExtAudioFile, decode and
   encode. Built only on Apple platforms (AIO_HAVE_AUDIOTOOLBOX, set by build_native.py);
   aio_core.c tries it before libav for those containers, and libav takes every file and
   encoding this backend refuses (AIO_EFORMAT). WAV, FLAC, MP3 and Ogg keep their own portable
   decoders on every platform. UNTESTED until the macOS CI workflow runs (docs/wheels.md); on
   Linux it is only syntax-checked against declarations of the API it uses
   (tools/macos/stubs, tests/test_packaging.py). */
#if defined(AIO_HAVE_AUDIOTOOLBOX)

#include <AudioToolbox/AudioToolbox.h>
#include <stdlib.h>
#include <string.h>

#include "aio.h"

typedef struct {
    ExtAudioFileRef ef;
    int channels;
} at_impl;

/* "AudioToolbox error 'typ?' (1954115647)": most OSStatus values are four printable chars */
static int at_fail(char *err, int code, const char *what, OSStatus st) {
    uint32_t u = (uint32_t)st;
    char c[5] = {(char)(u >> 24), (char)(u >> 16), (char)(u >> 8), (char)u, 0};
    int printable = 1;
    for (int k = 0; k < 4; k++) printable &= c[k] >= 32 && c[k] < 127;
    if (printable) return aio_fail(err, code, "%s: AudioToolbox error '%s' (%d)", what, c, (int)st);
    return aio_fail(err, code, "%s: AudioToolbox error %d", what, (int)st);
}

static AudioStreamBasicDescription float_client(double rate, int channels) {
    AudioStreamBasicDescription d;
    memset(&d, 0, sizeof d);
    d.mSampleRate = rate;
    d.mFormatID = kAudioFormatLinearPCM;
    d.mFormatFlags = kAudioFormatFlagIsFloat | kAudioFormatFlagIsPacked;
    d.mBitsPerChannel = 32;
    d.mChannelsPerFrame = (UInt32)channels;
    d.mFramesPerPacket = 1;
    d.mBytesPerFrame = d.mBytesPerPacket = 4 * (UInt32)channels;
    return d;
}

static CFURLRef path_url(const char *path) {
    return CFURLCreateFromFileSystemRepresentation(NULL, (const UInt8 *)path,
                                                   (CFIndex)strlen(path), false);
}

/* ---- decoding ---- */

static int64_t at_read(aio_file *f, float *out, int64_t frames, char *err) {
    at_impl *a = f->impl;
    int64_t done = 0;
    while (done < frames) {
        int64_t want = frames - done;
        UInt32 n = (UInt32)(want > (1 << 20) ? (1 << 20) : want);
        AudioBufferList bl;
        bl.mNumberBuffers = 1;
        bl.mBuffers[0].mNumberChannels = (UInt32)a->channels;
        bl.mBuffers[0].mDataByteSize = n * 4 * (UInt32)a->channels;
        bl.mBuffers[0].mData = out + done * a->channels;
        OSStatus st = ExtAudioFileRead(a->ef, &n, &bl);
        if (st != noErr) return at_fail(err, AIO_EDECODE, "corrupt audio data", st);
        if (n == 0) break;
        done += n;
    }
    return done;
}

static int at_seek(aio_file *f, int64_t frame, char *err) {
    at_impl *a = f->impl;
    OSStatus st = ExtAudioFileSeek(a->ef, (SInt64)frame);
    return st == noErr ? 0 : at_fail(err, AIO_EDECODE, "seek failed", st);
}

static int at_count(aio_file *f, int64_t *frames, char *err) {
    (void)f;
    *frames = 0;
    return aio_fail(err, AIO_EDECODE, "AudioToolbox states no length for this file");
}

static void at_close(aio_file *f) {
    at_impl *a = f->impl;
    if (a) {
        if (a->ef) ExtAudioFileDispose(a->ef);
        free(a);
    }
    f->impl = NULL;
}

static const aio_backend AT_BACKEND = {"audiotoolbox", at_read, at_seek, at_count, at_close};

/* the containers this backend opens, by their first bytes */
int aio_at_container(const unsigned char *head, size_t n, const char **container) {
    if (n >= 12 && memcmp(head, "FORM", 4) == 0 &&
        (memcmp(head + 8, "AIFF", 4) == 0 || memcmp(head + 8, "AIFC", 4) == 0))
        *container = "aiff";
    else if (n >= 4 && memcmp(head, "caff", 4) == 0)
        *container = "caf";
    else if (n >= 12 && memcmp(head + 4, "ftyp", 4) == 0 &&
             (memcmp(head + 8, "M4A ", 4) == 0 || memcmp(head + 8, "mp42", 4) == 0 ||
              memcmp(head + 8, "isom", 4) == 0 || memcmp(head + 8, "M4B ", 4) == 0))
        *container = "m4a";
    else
        return 0;
    return 1;
}

static const char *subtype_of(const AudioStreamBasicDescription *d) {
    switch (d->mFormatID) {
    case kAudioFormatLinearPCM:
        if (d->mFormatFlags & kAudioFormatFlagIsFloat)
            return d->mBitsPerChannel == 64 ? "float64" : "float32";
        return d->mBitsPerChannel <= 8 ? "pcm8" : d->mBitsPerChannel <= 16 ? "pcm16"
               : d->mBitsPerChannel <= 24                                  ? "pcm24"
                                                                           : "pcm32";
    case kAudioFormatMPEG4AAC: return "aac";
    case kAudioFormatAppleLossless: return "alac";
    case kAudioFormatULaw: return "ulaw";
    case kAudioFormatALaw: return "alaw";
    default: return NULL; /* anything else: libav names it */
    }
}

/* Opens f->path (not memory input) when its first bytes are AIFF, CAF or M4A; AIO_EFORMAT
   lets libav try. */
int aio_at_open(aio_file *f, const unsigned char *head, size_t got, char *err) {
    const char *container;
    if (f->mem || !aio_at_container(head, got, &container)) return AIO_EFORMAT;
    CFURLRef url = path_url(f->path);
    if (!url) return AIO_EFORMAT;
    ExtAudioFileRef ef = NULL;
    OSStatus st = ExtAudioFileOpenURL(url, &ef);
    CFRelease(url);
    if (st != noErr) return AIO_EFORMAT;
    AudioStreamBasicDescription fmt;
    SInt64 frames = -1;
    UInt32 size = sizeof fmt;
    const char *subtype = NULL;
    if (ExtAudioFileGetProperty(ef, kExtAudioFileProperty_FileDataFormat, &size, &fmt) != noErr ||
        fmt.mChannelsPerFrame < 1 || fmt.mSampleRate < 1 || !(subtype = subtype_of(&fmt))) {
        ExtAudioFileDispose(ef);
        return AIO_EFORMAT;
    }
    size = sizeof frames;
    if (ExtAudioFileGetProperty(ef, kExtAudioFileProperty_FileLengthFrames, &size, &frames) !=
            noErr ||
        frames < 0) {
        ExtAudioFileDispose(ef);
        return AIO_EFORMAT; /* libav counts what AudioToolbox cannot state */
    }
    AudioStreamBasicDescription client = float_client(fmt.mSampleRate, (int)fmt.mChannelsPerFrame);
    st = ExtAudioFileSetProperty(ef, kExtAudioFileProperty_ClientDataFormat, sizeof client,
                                 &client);
    if (st != noErr) {
        ExtAudioFileDispose(ef);
        return at_fail(err, AIO_EDECODE, "cannot decode to float32", st);
    }
    at_impl *a = calloc(1, sizeof *a);
    if (!a) {
        ExtAudioFileDispose(ef);
        return aio_fail(err, AIO_ENOMEM, "out of memory");
    }
    a->ef = ef;
    a->channels = (int)fmt.mChannelsPerFrame;
    f->be = &AT_BACKEND;
    f->impl = a;
    f->info.frames = (int64_t)frames;
    f->info.sample_rate = (int)fmt.mSampleRate;
    f->info.channels = a->channels;
    aio_set_str(f->info.subtype, sizeof f->info.subtype, subtype);
    aio_set_str(f->info.container, sizeof f->info.container, container);
    return 0;
}

/* ---- encoding ---- */

/* The file format for a container and encoding, or 0 (then libav writes it). */
static int file_format(const char *container, int encoding, int sample_rate, int channels,
                       AudioFileTypeID *type, AudioStreamBasicDescription *d) {
    memset(d, 0, sizeof *d);
    d->mSampleRate = sample_rate;
    d->mChannelsPerFrame = (UInt32)channels;
    int pcm_bits = encoding == AIO_ENC_PCM16 ? 16 : encoding == AIO_ENC_PCM24 ? 24
                 : encoding == AIO_ENC_FLOAT32 ? 32 : 0;
    if (strcmp(container, "m4a") == 0) {
        *type = kAudioFileM4AType;
        if (encoding == AIO_ENC_FLOAT32) { /* the default: AAC */
            d->mFormatID = kAudioFormatMPEG4AAC;
            return 1;
        }
        if (encoding == AIO_ENC_ALAC || encoding == AIO_ENC_PCM16) {
            d->mFormatID = kAudioFormatAppleLossless;
            d->mFormatFlags = encoding == AIO_ENC_PCM16 ? kAppleLosslessFormatFlag_16BitSourceData
                                                        : kAppleLosslessFormatFlag_24BitSourceData;
            d->mFramesPerPacket = 4096;
            return 1;
        }
        return 0;
    }
    int aiff = strcmp(container, "aiff") == 0;
    if ((!aiff && strcmp(container, "caf") != 0) || !pcm_bits) return 0;
    *type = aiff ? (encoding == AIO_ENC_FLOAT32 ? kAudioFileAIFCType : kAudioFileAIFFType)
                 : kAudioFileCAFType;
    d->mFormatID = kAudioFormatLinearPCM;
    d->mFormatFlags = kAudioFormatFlagIsPacked |
                      (encoding == AIO_ENC_FLOAT32 ? kAudioFormatFlagIsFloat
                                                   : kAudioFormatFlagIsSignedInteger) |
                      (aiff ? kAudioFormatFlagIsBigEndian : 0);
    d->mBitsPerChannel = (UInt32)pcm_bits;
    d->mFramesPerPacket = 1;
    d->mBytesPerFrame = d->mBytesPerPacket = (UInt32)(pcm_bits / 8 * channels);
    return 1;
}

static int set_bitrate(ExtAudioFileRef ef, int bitrate, char *err) {
    AudioConverterRef conv = NULL;
    UInt32 size = sizeof conv;
    OSStatus st = ExtAudioFileGetProperty(ef, kExtAudioFileProperty_AudioConverter, &size, &conv);
    if (st != noErr || !conv) return at_fail(err, AIO_EARG, "no AAC encoder", st);
    UInt32 br = (UInt32)bitrate;
    st = AudioConverterSetProperty(conv, kAudioConverterEncodeBitRate, sizeof br, &br);
    if (st != noErr) return at_fail(err, AIO_EARG, "bitrate not supported by the AAC encoder", st);
    CFArrayRef config = NULL; /* makes ExtAudioFile take the converter's new settings */
    st = ExtAudioFileSetProperty(ef, kExtAudioFileProperty_ConverterConfig, sizeof config, &config);
    return st == noErr ? 0 : at_fail(err, AIO_EARG, "cannot apply the bitrate", st);
}

/* Writes a->data to path as AIFF, CAF or M4A (AAC, ALAC). AIO_EFORMAT: not a combination
   this backend writes (libav does), or memory output. */
int aio_at_save(const char *path, const char *container, const aio_audio *a, char *err) {
    AudioFileTypeID type;
    AudioStreamBasicDescription fmt;
    if (!path || !file_format(container, a->encoding, a->sample_rate, a->channels, &type, &fmt))
        return AIO_EFORMAT;
    CFURLRef url = path_url(path);
    if (!url) return aio_fail(err, AIO_ENOMEM, "out of memory");
    ExtAudioFileRef ef = NULL;
    OSStatus st = ExtAudioFileCreateWithURL(url, type, &fmt, NULL, kAudioFileFlags_EraseFile, &ef);
    CFRelease(url);
    if (st != noErr) return AIO_EFORMAT; /* e.g. a rate the AAC encoder refuses: libav's turn */
    AudioStreamBasicDescription client = float_client(a->sample_rate, a->channels);
    st = ExtAudioFileSetProperty(ef, kExtAudioFileProperty_ClientDataFormat, sizeof client,
                                 &client);
    int rc = st == noErr ? 0 : at_fail(err, AIO_EARG, "cannot encode from float32", st);
    if (rc == 0 && fmt.mFormatID == kAudioFormatMPEG4AAC && a->bitrate > 0)
        rc = set_bitrate(ef, a->bitrate, err);
    enum { BLOCK = 4096 };
    float *buf = rc == 0 ? malloc(sizeof(float) * BLOCK * (size_t)a->channels) : NULL;
    if (rc == 0 && !buf) rc = aio_fail(err, AIO_ENOMEM, "out of memory");
    for (int64_t t = 0; rc == 0 && t < a->frames; t += BLOCK) {
        int64_t n = a->frames - t < BLOCK ? a->frames - t : BLOCK;
        for (int64_t i = 0; i < n; i++) /* interleave from the caller's strides, clipping */
            for (int c = 0; c < a->channels; c++) {
                float x = a->data[(t + i) * a->frame_stride + c * a->chan_stride];
                buf[i * a->channels + c] = a->clip ? aio_clip(x) : x;
            }
        AudioBufferList bl;
        bl.mNumberBuffers = 1;
        bl.mBuffers[0].mNumberChannels = (UInt32)a->channels;
        bl.mBuffers[0].mDataByteSize = (UInt32)(n * 4 * a->channels);
        bl.mBuffers[0].mData = buf;
        st = ExtAudioFileWrite(ef, (UInt32)n, &bl);
        if (st != noErr) rc = at_fail(err, AIO_EIO, "cannot write", st);
    }
    free(buf);
    st = ExtAudioFileDispose(ef); /* writes the trailer (M4A's moov, CAF's packet table) */
    if (rc == 0 && st != noErr) rc = at_fail(err, AIO_EIO, "cannot finish the file", st);
    return rc;
}

#endif /* AIO_HAVE_AUDIOTOOLBOX */
