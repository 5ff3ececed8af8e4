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

    /// What one file may hold; past a limit, reading stops at once (a 20 MB body of empty lines or commas must not
    /// become millions of records in memory).
    struct Limits {
        var records = 100_001
        var fieldsPerRecord = 200
        var fieldLength = 10_000
    }

    /// Every record of `text` (CRLF or LF line ends, a UTF-8 byte-order mark ignored, blank lines skipped). A quote
    /// left open, text after a closing quote, or a limit passed is an error naming the line.
    static func parse(_ text: String, limits: Limits = Limits()) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var line = 1, recordLine = 1, quoteLine = 1
        var quoted = false, afterQuote = false, fieldStarted = false
        var scalars = text.unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars = scalars.dropFirst() }

        func endField() throws {
            guard fields.count < limits.fieldsPerRecord else {
                throw Malformed(line: recordLine, problem: "more than \(limits.fieldsPerRecord) columns")
            }
            fields.append(String(field))
            field = String.UnicodeScalarView()
            quoted = false
            afterQuote = false
            fieldStarted = false
        }
        func endRecord() throws {
            try endField()
            if !(fields.count == 1 && fields[0].isEmpty) {
                guard records.count < limits.records else { throw Malformed(line: recordLine, problem: "more than \(limits.records - 1) rows; split the file") }
                records.append(Record(line: recordLine, fields: fields))
            }
            fields = []
        }
        func append(_ c: Unicode.Scalar) throws {
            guard field.count < limits.fieldLength else {
                throw Malformed(line: line, problem: "a field longer than \(limits.fieldLength) characters")
            }
            field.append(c)
        }

        var iterator = scalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    let next = iterator.next()
                    if next == "\"" { try append("\"") } else { quoted = false; afterQuote = true; pending = next }
                } else {
                    if c == "\n" { line += 1 }
                    try append(c)
                }
                continue
            }
            switch c {
            case ",":
                try endField()
            case "\r", "\n":
                if c == "\r" {
                    let next = iterator.next()
                    if next != "\n" { pending = next }
                }
                try endRecord()
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
                try append(c)
                fieldStarted = true
            }
        }
        if quoted { throw Malformed(line: quoteLine, problem: "a quote opened here is never closed") }
        if fieldStarted || !fields.isEmpty { try endRecord() }
        return records
    }
}
