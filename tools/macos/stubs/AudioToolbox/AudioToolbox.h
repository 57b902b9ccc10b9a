/* Declarations of the part of Apple's AudioToolbox and CoreFoundation that native/io/aio_at.c
   uses, as the macOS SDK declares them (types, signatures, constant values), so that the shim
   is syntax- and type-checked on Linux (tests/test_packaging.py). Never
   linked: the macOS build uses the real framework headers. */
#ifndef AIO_STUB_AUDIOTOOLBOX_H
#define AIO_STUB_AUDIOTOOLBOX_H

#include <stdbool.h>
#include <stdint.h>

/* CoreFoundation */
typedef unsigned char UInt8;
typedef uint32_t UInt32;
typedef int64_t SInt64;
typedef double Float64;
typedef int32_t OSStatus;
typedef long CFIndex;
typedef unsigned char Boolean;
typedef const void *CFTypeRef;
typedef const struct __CFAllocator *CFAllocatorRef;
typedef const struct __CFURL *CFURLRef;
typedef const struct __CFArray *CFArrayRef;
CFURLRef CFURLCreateFromFileSystemRepresentation(CFAllocatorRef allocator, const UInt8 *buffer,
                                                 CFIndex bufLen, Boolean isDirectory);
void CFRelease(CFTypeRef cf);
enum { noErr = 0 };

/* CoreAudioTypes */
typedef UInt32 AudioFormatID;
typedef UInt32 AudioFormatFlags;
typedef struct AudioStreamBasicDescription {
    Float64 mSampleRate;
    AudioFormatID mFormatID;
    AudioFormatFlags mFormatFlags;
    UInt32 mBytesPerPacket;
    UInt32 mFramesPerPacket;
    UInt32 mBytesPerFrame;
    UInt32 mChannelsPerFrame;
    UInt32 mBitsPerChannel;
    UInt32 mReserved;
} AudioStreamBasicDescription;
typedef struct AudioBuffer {
    UInt32 mNumberChannels;
    UInt32 mDataByteSize;
    void *mData;
} AudioBuffer;
typedef struct AudioBufferList {
    UInt32 mNumberBuffers;
    AudioBuffer mBuffers[1];
} AudioBufferList;
typedef struct AudioChannelLayout AudioChannelLayout;
enum {
    kAudioFormatLinearPCM = 0x6C70636D,     /* 'lpcm' */
    kAudioFormatMPEG4AAC = 0x61616320,      /* 'aac ' */
    kAudioFormatAppleLossless = 0x616C6163, /* 'alac' */
    kAudioFormatULaw = 0x756C6177,          /* 'ulaw' */
    kAudioFormatALaw = 0x616C6177,          /* 'alaw' */
};
enum {
    kAudioFormatFlagIsFloat = 1U << 0,
    kAudioFormatFlagIsBigEndian = 1U << 1,
    kAudioFormatFlagIsSignedInteger = 1U << 2,
    kAudioFormatFlagIsPacked = 1U << 3,
};
enum {
    kAppleLosslessFormatFlag_16BitSourceData = 1,
    kAppleLosslessFormatFlag_24BitSourceData = 3,
};

/* AudioFile */
typedef UInt32 AudioFileTypeID;
enum {
    kAudioFileAIFFType = 0x41494646, /* 'AIFF' */
    kAudioFileAIFCType = 0x41494643, /* 'AIFC' */
    kAudioFileCAFType = 0x63616666,  /* 'caff' */
    kAudioFileM4AType = 0x6D346166,  /* 'm4af' */
};
enum { kAudioFileFlags_EraseFile = 1 };

/* AudioConverter */
typedef struct OpaqueAudioConverter *AudioConverterRef;
typedef UInt32 AudioConverterPropertyID;
enum { kAudioConverterEncodeBitRate = 0x62726174 }; /* 'brat' */
OSStatus AudioConverterSetProperty(AudioConverterRef inAudioConverter,
                                   AudioConverterPropertyID inPropertyID, UInt32 inPropertyDataSize,
                                   const void *inPropertyData);

/* ExtendedAudioFile */
typedef struct OpaqueExtAudioFile *ExtAudioFileRef;
typedef UInt32 ExtAudioFilePropertyID;
enum {
    kExtAudioFileProperty_FileDataFormat = 0x66666D74,   /* 'ffmt' */
    kExtAudioFileProperty_ClientDataFormat = 0x63666D74, /* 'cfmt' */
    kExtAudioFileProperty_FileLengthFrames = 0x2366726D, /* '#frm' */
    kExtAudioFileProperty_AudioConverter = 0x61636E76,   /* 'acnv' */
    kExtAudioFileProperty_ConverterConfig = 0x61636366,  /* 'accf' */
};
OSStatus ExtAudioFileOpenURL(CFURLRef inURL, ExtAudioFileRef *outExtAudioFile);
OSStatus ExtAudioFileCreateWithURL(CFURLRef inURL, AudioFileTypeID inFileType,
                                   const AudioStreamBasicDescription *inStreamDesc,
                                   const AudioChannelLayout *inChannelLayout, UInt32 inFlags,
                                   ExtAudioFileRef *outExtAudioFile);
OSStatus ExtAudioFileDispose(ExtAudioFileRef inExtAudioFile);
OSStatus ExtAudioFileRead(ExtAudioFileRef inExtAudioFile, UInt32 *ioNumberFrames,
                          AudioBufferList *ioData);
OSStatus ExtAudioFileWrite(ExtAudioFileRef inExtAudioFile, UInt32 inNumberFrames,
                           const AudioBufferList *ioData);
OSStatus ExtAudioFileSeek(ExtAudioFileRef inExtAudioFile, SInt64 inFrameOffset);
OSStatus ExtAudioFileGetProperty(ExtAudioFileRef inExtAudioFile,
                                 ExtAudioFilePropertyID inPropertyID, UInt32 *ioPropertyDataSize,
                                 void *outPropertyData);
OSStatus ExtAudioFileSetProperty(ExtAudioFileRef inExtAudioFile,
                                 ExtAudioFilePropertyID inPropertyID, UInt32 inPropertyDataSize,
                                 const void *inPropertyData);

#endif
