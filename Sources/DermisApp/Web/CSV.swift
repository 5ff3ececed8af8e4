import Foundation

/// RFC 4180 CSV: written with spreadsheet formulas neutralised, read with the line each record starts on. Written by
/// hand: the mirrored CSV libraries either accept a broken quote silently (CSV.swift) or report it without saying
/// where (SwiftCSV), and an import must name the line at fault.
enum CSV {
    struct Record {
        /// The line (1-based) the record starts on; a quoted field may run over several.
        let line: Int
        let fields: [String]
    }

    struct Malformed: Error, CustomStringConvertible {
        let line: Int
        let problem: String
        var description: String { "line \(line): \(problem)" }
    }

    /// A field as written: quoted when it must be; a leading =, +, -, @, tab or carriage return is prefixed with '
    /// so a spreadsheet never runs it as a formula (OWASP CSV injection).
    static func field(_ value: String) -> String {
        var text = value
        if let first = text.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) { text = "'" + text }
        guard text.contains(where: { ",\"\r\n".contains($0) }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// One record, with the CRLF RFC 4180 ends records with.
    static func line(_ fields: [String]) -> String { fields.map(field).joined(separator: ",") + "\r\n" }

    /// What `field` wrote, read back: the ' it put before a formula character is taken off again.
    static func unneutralised(_ value: String) -> String {
        let scalars = value.unicodeScalars
        guard scalars.count >= 2, scalars.first == "'", "=+-@\t\r".unicodeScalars.contains(scalars[scalars.index(after: scalars.startIndex)]) else {
            return value
        }
        return String(value.dropFirst())
    }

    /// Every record of `text` (CRLF or LF line ends, a UTF-8 byte-order mark ignored, blank lines skipped). A quote
    /// left open, or text after a closing quote, is an error naming the line.
    static func parse(_ text: String) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var line = 1, recordLine = 1, quoteLine = 1
        var quoted = false, afterQuote = false, fieldStarted = false
        var scalars = text.unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars = scalars.dropFirst() }

        func endField() {
            fields.append(String(field))
            field = String.UnicodeScalarView()
            quoted = false
            afterQuote = false
            fieldStarted = false
        }
        func endRecord() {
            endField()
            if !(fields.count == 1 && fields[0].isEmpty) { records.append(Record(line: recordLine, fields: fields)) }
            fields = []
        }

        var iterator = scalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    let next = iterator.next()
                    if next == "\"" { field.append("\"") } else { quoted = false; afterQuote = true; pending = next }
                } else {
                    if c == "\n" { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case ",":
                endField()
            case "\r", "\n":
                if c == "\r" {
                    let next = iterator.next()
                    if next != "\n" { pending = next }
                }
                endRecord()
                line += 1
                recordLine = line
            case "\"":
                guard !fieldStarted else {
                    throw Malformed(line: line, problem: afterQuote ? "text after a closing quote; a quote inside a field is written twice (\"\")"
                                                                     : "a quote inside an unquoted field; quote the whole field")
                }
                quoted = true
                fieldStarted = true
                quoteLine = line
            default:
                if afterQuote { throw Malformed(line: line, problem: "text after a closing quote; a quote inside a field is written twice (\"\")") }
                field.append(c)
                fieldStarted = true
            }
        }
        if quoted { throw Malformed(line: quoteLine, problem: "a quote opened here is never closed") }
        if fieldStarted || !fields.isEmpty { endRecord() }
        return records
    }
}
