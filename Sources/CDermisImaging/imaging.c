// Photo re-encoding for Dermis (docs/SECURITY.md R13) on libjpeg-turbo and libpng. libjpeg reports errors by
// calling error_exit, which must not return: it longjmps back here, which Swift cannot do, hence C.
#include "dermis_imaging.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

struct dermis_jpeg_error {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    int too_complex;
};

static void dermis_jpeg_error_exit(j_common_ptr info) {
    struct dermis_jpeg_error *error = (struct dermis_jpeg_error *)info->err;
    if (error->message) (*info->err->format_message)(info, error->message);
    longjmp(error->jump, 1);
}

static void dermis_jpeg_silence(j_common_ptr info, int level) { (void)info; (void)level; }

/// Called by libjpeg as it works through the file: stops a decode past its scan limit (libjpeg-turbo's advice for
/// untrusted progressive JPEGs, as djpeg -maxscans).
struct dermis_jpeg_progress {
    struct jpeg_progress_mgr base;
    int max_scans;
};


static void dermis_jpeg_progress_monitor(j_common_ptr info) {
    struct dermis_jpeg_progress *progress = (struct dermis_jpeg_progress *)info->progress;
    j_decompress_ptr decompress = (j_decompress_ptr)info;
    if (decompress->input_scan_number > progress->max_scans) {
        struct dermis_jpeg_error *error = (struct dermis_jpeg_error *)info->err;
        if (error->message) snprintf(error->message, JMSG_LENGTH_MAX, "more than %d scans", progress->max_scans);
        error->too_complex = 1;
        longjmp(error->jump, 1);
    }
}

static void set_message(dermis_image_result *result, const char *text) {
    snprintf(result->message, sizeof result->message, "%s", text);
}

static int encode_rgb(const uint8_t *rgb, int width, int height, int quality, int progressive, dermis_image_result *result) {
    struct jpeg_compress_struct info;
    struct dermis_jpeg_error error;
    char message[JMSG_LENGTH_MAX] = {0};
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    info.err = jpeg_std_error(&error.base);
    error.base.error_exit = dermis_jpeg_error_exit;
    error.message = message;
    if (setjmp(error.jump)) {
        jpeg_destroy_compress(&info);
        free(out);
        set_message(result, message);
        return DERMIS_IMAGE_UNDECODABLE;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &out, &out_size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = 3;
    info.in_color_space = JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    if (progressive) jpeg_simple_progression(&info);
    info.write_JFIF_header = TRUE;
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)info.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    result->data = out;
    result->size = out_size;
    result->width = width;
    result->height = height;
    return DERMIS_IMAGE_OK;
}

int dermis_encode_jpeg_rgb(const uint8_t *rgb, int width, int height, int quality, int progressive, dermis_image_result *result) {
    memset(result, 0, sizeof *result);
    return encode_rgb(rgb, width, height, quality, progressive, result);
}

/// Applies an EXIF orientation to RGB pixels; returns a new buffer and its size.
static uint8_t *orient(const uint8_t *src, int w, int h, int orientation, int *out_w, int *out_h) {
    int swap = orientation >= 5 && orientation <= 8;
    int dw = swap ? h : w, dh = swap ? w : h;
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst) return NULL;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int dx, dy;
            switch (orientation) {
            case 2: dx = w - 1 - x; dy = y; break;
            case 3: dx = w - 1 - x; dy = h - 1 - y; break;
            case 4: dx = x; dy = h - 1 - y; break;
            case 5: dx = y; dy = x; break;
            case 6: dx = h - 1 - y; dy = x; break;
            case 7: dx = h - 1 - y; dy = w - 1 - x; break;
            case 8: dx = y; dy = w - 1 - x; break;
            default: dx = x; dy = y; break;
            }
            memcpy(dst + ((size_t)dy * dw + dx) * 3, src + ((size_t)y * w + x) * 3, 3);
        }
    }
    *out_w = dw;
    *out_h = dh;
    return dst;
}

int dermis_reencode_jpeg(const uint8_t *input, size_t size, int orientation, dermis_decode_limits limits, int quality,
                         dermis_image_result *result) {
    struct jpeg_decompress_struct info;
    struct dermis_jpeg_error error;
    struct dermis_jpeg_progress progress;
    char message[JMSG_LENGTH_MAX] = {0};
    uint8_t *volatile pixels = NULL;
    memset(result, 0, sizeof *result);
    info.err = jpeg_std_error(&error.base);
    error.base.error_exit = dermis_jpeg_error_exit;
    error.base.emit_message = dermis_jpeg_silence;
    error.message = message;
    error.too_complex = 0;
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        set_message(result, message);
        if (error.too_complex) return DERMIS_IMAGE_TOO_COMPLEX;
        // libjpeg asks for a backing store once its buffers would pass max_memory_to_use.
        if (info.err->msg_code == JERR_NO_BACKING_STORE) return DERMIS_IMAGE_NO_MEMORY;
        return DERMIS_IMAGE_UNDECODABLE;
    }
    jpeg_create_decompress(&info);
    progress.base.progress_monitor = dermis_jpeg_progress_monitor;
    progress.max_scans = limits.max_scans;
    info.progress = &progress.base;
    jpeg_mem_src(&info, input, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    long max_pixels = limits.max_pixels;
    if ((long)info.image_width * (long)info.image_height > max_pixels) {
        snprintf(result->message, sizeof result->message, "%u × %u pixels", info.image_width, info.image_height);
        jpeg_destroy_decompress(&info);
        return DERMIS_IMAGE_TOO_MANY_PIXELS;
    }
    // One budget for the whole decode: the RGB pixels (twice when they must be turned upright), and what is left for
    // libjpeg's own buffers (a progressive JPEG's coefficients), past which it asks for a backing store and stops.
    size_t pixel_bytes = (size_t)info.image_width * (size_t)info.image_height * 3;
    size_t copies = (orientation >= 2 && orientation <= 8) ? 2 : 1;
    if (pixel_bytes * copies >= limits.max_memory) {
        jpeg_destroy_decompress(&info);
        return DERMIS_IMAGE_NO_MEMORY;
    }
    info.mem->max_memory_to_use = (long)(limits.max_memory - pixel_bytes * copies);
    info.out_color_space = JCS_RGB;
    jpeg_start_decompress(&info);
    int width = (int)info.output_width, height = (int)info.output_height;
    pixels = malloc((size_t)width * (size_t)height * 3);
    if (!pixels) {
        jpeg_destroy_decompress(&info);
        return DERMIS_IMAGE_NO_MEMORY;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.output_scanline * (size_t)width * 3);
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);

    uint8_t *upright = pixels;
    int out_w = width, out_h = height;
    if (orientation >= 2 && orientation <= 8) {
        upright = orient(pixels, width, height, orientation, &out_w, &out_h);
        free(pixels);
        pixels = NULL;
        if (!upright) return DERMIS_IMAGE_NO_MEMORY;
    }
    int status = encode_rgb(upright, out_w, out_h, quality, 0, result);
    free(upright);
    return status;
}

int dermis_reencode_png(const uint8_t *input, size_t size, dermis_decode_limits limits, dermis_image_result *result) {
    long max_pixels = limits.max_pixels;
    png_image image;
    memset(result, 0, sizeof *result);
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, input, size)) {
        set_message(result, image.message);
        png_image_free(&image);
        return DERMIS_IMAGE_UNDECODABLE;
    }
    if ((long)image.width * (long)image.height > max_pixels) {
        snprintf(result->message, sizeof result->message, "%u × %u pixels", image.width, image.height);
        png_image_free(&image);
        return DERMIS_IMAGE_TOO_MANY_PIXELS;
    }
    image.format = (image.format & PNG_FORMAT_FLAG_ALPHA) ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    size_t stride = PNG_IMAGE_ROW_STRIDE(image);
    if (PNG_IMAGE_BUFFER_SIZE(image, stride) > limits.max_memory) {
        png_image_free(&image);
        return DERMIS_IMAGE_NO_MEMORY;
    }
    uint8_t *pixels = malloc(PNG_IMAGE_BUFFER_SIZE(image, stride));
    if (!pixels) {
        png_image_free(&image);
        return DERMIS_IMAGE_NO_MEMORY;
    }
    if (!png_image_finish_read(&image, NULL, pixels, 0, NULL)) {
        set_message(result, image.message);
        free(pixels);
        png_image_free(&image);
        return DERMIS_IMAGE_UNDECODABLE;
    }
    png_alloc_size_t out_size = 0;
    image.flags = 0;
    if (!png_image_write_get_memory_size(image, out_size, 0, pixels, 0, NULL)) {
        set_message(result, image.message);
        free(pixels);
        return DERMIS_IMAGE_UNDECODABLE;
    }
    uint8_t *out = malloc(out_size);
    if (!out || !png_image_write_to_memory(&image, out, &out_size, 0, pixels, 0, NULL)) {
        set_message(result, out ? image.message : "out of memory");
        free(out);
        free(pixels);
        return DERMIS_IMAGE_UNDECODABLE;
    }
    free(pixels);
    result->data = out;
    result->size = out_size;
    result->width = (int)image.width;
    result->height = (int)image.height;
    return DERMIS_IMAGE_OK;
}

void dermis_image_free(dermis_image_result *result) {
    free(result->data);
    result->data = NULL;
    result->size = 0;
}
