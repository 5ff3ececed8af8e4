#ifndef DERMIS_IMAGING_H
#define DERMIS_IMAGING_H

#include <stddef.h>
#include <stdint.h>

/// The outcome of a decode and re-encode: new bytes owned by the caller (free with dermis_image_free),
/// the image's size after orientation, or a message saying why the input was refused.
typedef struct {
    uint8_t *data;
    size_t size;
    int width;
    int height;
    char message[200];
} dermis_image_result;

enum {
    DERMIS_IMAGE_OK = 0,
    DERMIS_IMAGE_UNDECODABLE = 1,
    DERMIS_IMAGE_TOO_MANY_PIXELS = 2,
    DERMIS_IMAGE_NO_MEMORY = 3,
    DERMIS_IMAGE_TOO_COMPLEX = 4
};

/// What one decode may spend: JPEG scans (a progressive JPEG of thousands of tiny scans costs minutes of CPU for a few
/// kilobytes) and bytes of memory (libjpeg's own buffers and the decoded pixels; PNG pixels).
typedef struct {
    long max_pixels;
    int max_scans;
    size_t max_memory;
} dermis_decode_limits;

/// Decodes a JPEG to pixels within `limits` (more than max_pixels is refused before any pixel is decoded), applies the
/// EXIF orientation (1–8) to the pixels, and encodes a new baseline JPEG with no metadata segments at all.
int dermis_reencode_jpeg(const uint8_t *input, size_t size, int orientation, dermis_decode_limits limits, int quality,
                         dermis_image_result *result);

/// Decodes a PNG (any bit depth, palette or grey) to 8-bit RGB or RGBA within `limits` and writes a new PNG holding only
/// the pixels.
int dermis_reencode_png(const uint8_t *input, size_t size, dermis_decode_limits limits, dermis_image_result *result);

/// Encodes 8-bit RGB pixels as a JPEG, baseline or (for tests) progressive (thumbnails and tests).
int dermis_encode_jpeg_rgb(const uint8_t *rgb, int width, int height, int quality, int progressive, dermis_image_result *result);

void dermis_image_free(dermis_image_result *result);

#endif
