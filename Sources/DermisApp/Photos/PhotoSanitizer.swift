import CDermisImaging
import DermisCore
import Foundation

/// Turns an uploaded file into a photo Dermis may keep (docs/SECURITY.md R13): the type comes from the magic bytes
/// (JPEG or PNG; nothing else), the pixel count is checked before any pixel is decoded, and the pixels are
/// decoded and encoded anew — so no metadata (EXIF, GPS, comments, ICC), trailing bytes or second format
/// survives. A JPEG's EXIF orientation is applied to the pixels first, so the photo still stands upright.
struct PhotoSanitizer: Sendable {
    enum Kind: String, Sendable {
        case jpeg, png

        var contentType: String { self == .jpeg ? "image/jpeg" : "image/png" }
        var fileExtension: String { self == .jpeg ? "jpg" : "png" }
    }

    struct Clean: Sendable {
        let kind: Kind
        let data: Data
        let width: Int
        let height: Int
    }

    var maxBytes: Int
    var maxPixels: Int
    /// A progressive JPEG has about ten scans; thousands of tiny ones are a CPU bomb.
    var maxScans: Int = 100
    /// What one decode may allocate: libjpeg's buffers, and the decoded pixels.
    var maxMemory: Int = 512 * 1_048_576
    var jpegQuality: Int32 = 90

    /// The clean photo, or InvalidInput naming `field` and saying what is wrong with the file.
    func clean(_ data: Data, field: String) throws -> Clean {
        guard !data.isEmpty else { throw InvalidInput(path: field, problem: "the file is empty") }
        guard data.count <= maxBytes else {
            throw InvalidInput(path: field, problem: "the file is \(Self.megabytes(data.count)); photos may be at most \(Self.megabytes(maxBytes))")
        }
        let kind = try Self.sniff(data, field: field)
        var result = dermis_image_result()
        let limits = dermis_decode_limits(max_pixels: maxPixels, max_scans: Int32(maxScans), max_memory: maxMemory)
        let status: Int32 = data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self).baseAddress!
            switch kind {
            case .jpeg:
                return dermis_reencode_jpeg(bytes, data.count, Int32(Self.exifOrientation(data)), limits, jpegQuality, &result)
            case .png:
                return dermis_reencode_png(bytes, data.count, limits, &result)
            }
        }
        defer { dermis_image_free(&result) }
        let message = withUnsafeBytes(of: result.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        switch Int(status) {
        case Int(DERMIS_IMAGE_OK):
            return Clean(kind: kind, data: Data(bytes: result.data, count: result.size), width: Int(result.width), height: Int(result.height))
        case Int(DERMIS_IMAGE_TOO_MANY_PIXELS):
            throw InvalidInput(path: field, problem: "the image is \(message); photos may have at most \(maxPixels / 1_000_000) million pixels")
        case Int(DERMIS_IMAGE_NO_MEMORY):
            throw InvalidInput(path: field, problem: "the image is too large to process")
        case Int(DERMIS_IMAGE_TOO_COMPLEX):
            throw InvalidInput(path: field, problem: "the JPEG has \(message), more than a photo needs; save it again as an ordinary JPEG")
        default:
            throw InvalidInput(path: field, problem: "the \(kind == .jpeg ? "JPEG" : "PNG") file is damaged and cannot be read (\(message))")
        }
    }

    /// The file's real type from its first bytes; anything but JPEG or PNG is refused, saying what it looks like.
    static func sniff(_ data: Data, field: String) throws -> Kind {
        let head = [UInt8](data.prefix(16))
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        let text = String(decoding: data.prefix(256), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let what: String
        if head.count >= 12, String(decoding: head[4..<8], as: UTF8.self) == "ftyp",
           ["heic", "heix", "mif1", "msf1", "hevc"].contains(String(decoding: head[8..<12], as: UTF8.self)) {
            what = "a HEIC photo, which Dermis cannot decode yet: set the camera to 'Most Compatible' or export it as JPEG"
        } else if text.hasPrefix("<") {
            what = "a text document (SVG, HTML or XML), not a photo"
        } else if head.starts(with: Array("GIF8".utf8)) {
            what = "a GIF image"
        } else if head.starts(with: Array("RIFF".utf8)) {
            what = "a WebP or other RIFF file"
        } else if head.starts(with: Array("%PDF".utf8)) {
            what = "a PDF document"
        } else {
            what = "not a JPEG or PNG image"
        }
        throw InvalidInput(path: field, problem: "the file is \(what); upload a JPEG or PNG photo")
    }

    /// The EXIF orientation (1–8) in a JPEG's APP1 segment, or 1 when there is none or it cannot be read.
    static func exifOrientation(_ data: Data) -> Int {
        let bytes = [UInt8](data.prefix(256 * 1024))
        var i = 2
        while i + 4 <= bytes.count, bytes[i] == 0xFF {
            let marker = bytes[i + 1]
            if marker == 0xDA || marker == 0xD9 { break }
            let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            let body = i + 4
            if marker == 0xE1, length >= 8, body + length - 2 <= bytes.count,
               Array(bytes[body..<body + 6]) == Array("Exif\0\0".utf8) {
                return orientation(inTIFF: Array(bytes[body + 6..<body + length - 2])) ?? 1
            }
            i += 2 + length
        }
        return 1
    }

    private static func orientation(inTIFF tiff: [UInt8]) -> Int? {
        guard tiff.count >= 8 else { return nil }
        let little = tiff[0] == 0x49
        func u16(_ at: Int) -> Int? {
            guard at + 2 <= tiff.count else { return nil }
            return little ? Int(tiff[at]) | Int(tiff[at + 1]) << 8 : Int(tiff[at]) << 8 | Int(tiff[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let a = u16(at), let b = u16(at + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0..<min(count, 512) {
            let at = ifd + 2 + entry * 12
            guard let tag = u16(at) else { return nil }
            if tag == 0x0112, let value = u16(at + 8), (1...8).contains(value) { return value }
        }
        return nil
    }

    /// Encodes 8-bit RGB pixels as a JPEG, baseline or progressive (test images; thumbnails later).
    static func encodeJPEG(rgb: [UInt8], width: Int, height: Int, quality: Int32 = 90, progressive: Bool = false) -> Data? {
        precondition(rgb.count == width * height * 3)
        var result = dermis_image_result()
        let status = rgb.withUnsafeBufferPointer {
            dermis_encode_jpeg_rgb($0.baseAddress!, Int32(width), Int32(height), quality, progressive ? 1 : 0, &result)
        }
        defer { dermis_image_free(&result) }
        guard status == DERMIS_IMAGE_OK else { return nil }
        return Data(bytes: result.data, count: result.size)
    }

    static func megabytes(_ bytes: Int) -> String {
        String(format: "%.1f MB", Double(bytes) / 1_048_576)
    }
}
