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
    DERMIS_IMAGE_NO_MEMORY = 3
};

/// Decodes a JPEG to pixels (refusing more than max_pixels before any pixel is decoded), applies the EXIF
/// orientation (1–8) to the pixels, and encodes a new baseline JPEG with no metadata segments at all.
int dermis_reencode_jpeg(const uint8_t *input, size_t size, int orientation, long max_pixels, int quality,
                         dermis_image_result *result);

/// Decodes a PNG (any bit depth, palette or grey) to 8-bit RGB or RGBA and writes a new PNG holding only the pixels.
int dermis_reencode_png(const uint8_t *input, size_t size, long max_pixels, dermis_image_result *result);

/// Encodes 8-bit RGB pixels as a JPEG (thumbnails and tests).
int dermis_encode_jpeg_rgb(const uint8_t *rgb, int width, int height, int quality, dermis_image_result *result);

void dermis_image_free(dermis_image_result *result);

#endif
